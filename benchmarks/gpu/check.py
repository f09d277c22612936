"""The GPU device check for SEGMENT_CELLS (issue #19), run by benchmarks/gpu/check.sh.

    python benchmarks/gpu/check.py [--cpu] [--size 8192x6144] [--seed 11] [--out DIR]

On one generated slide it prints:
  1. the bare model (the TorchScript forward on device-resident, pre-normalised tiles): tiles/s
     at batch 1/4/16 in fp32 and bf16, and peak GPU memory per batch;
  2. the SEGMENT_CELLS job (TISSUE_MASK + SEGMENT_CELLS through the engine) per precision
     (fp32, bf16, auto), and once on the CPU: tiles/s, where its time goes (the manifest's
     timings), F1 against the generator's truth, peak GPU memory, what ran (precision, batch);
  3. GPU utilisation over each job, sampled with nvidia-smi every 200 ms;
  4. the issue's ratios: job / bare batched throughput (goal >= 0.8), GPU job / CPU job (>= 15).

`--cpu` runs every part on the CPU with a small slide and batches 1/4 (nvidia-smi parts print
n/a), so the script is tested end to end where no GPU is. Results also go to OUT/check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ---- nvidia-smi sampling -----------------------------------------------------------------------
class GpuSampler:
    """`nvidia-smi` utilisation and memory every 200 ms while in the `with` block."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (util %, memory MiB)
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        smi = shutil.which("nvidia-smi")
        if smi is None:
            return self
        cmd = [
            smi,
            "--query-gpu=utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
            "-lms",
            "200",
            "-i",
            "0",
        ]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                util, mem = (float(v) for v in line.strip().split(","))
            except ValueError:
                continue
            self.samples.append((util, mem))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"samples": 0}
        utils = sorted(u for u, _ in self.samples)
        return {
            "samples": len(utils),
            "util_mean": round(sum(utils) / len(utils), 1),
            "util_p50": utils[len(utils) // 2],
            "busy_share": round(sum(u >= 80 for u in utils) / len(utils), 3),
            "idle_share": round(sum(u < 10 for u in utils) / len(utils), 3),
            "mem_max_mib": max(m for _, m in self.samples),
        }


MAX_BARE_TILES = 64


# ---- the bare model ----------------------------------------------------------------------------
def bare_model(
    slide: Path,
    device: str,
    batches: list[int],
    precisions: list[str],
    seconds: float,
    tile_size: int,
) -> list[dict[str, Any]]:
    import numpy as np
    import torch

    from benchmarks.common import tissue_plan
    from wsitui.jobs.segment_cells.accel import first_tiles
    from wsitui.jobs.segment_cells.params import SegmentCellsParams
    from wsitui.models import ModelCache, resolve
    from wsitui.models.normalize import normalize_batch
    from wsitui.slides.reader import open_slide

    params = SegmentCellsParams(tile_size=tile_size)
    cache = ModelCache()
    model = cache.get(resolve("shipped"), device)  # InstanSeg: the default is classical
    reader = open_slide(slide)
    plan = tissue_plan(reader, model.pixel_size, params)
    # The job's own tissue tiles (up to MAX_BARE_TILES, spread over the plan), so the bare model
    # and the job see the same mix of full and sparse tiles; batches cycle through them.
    step = max(1, -(-len(plan.tiles) // MAX_BARE_TILES))
    picked = replace(plan, tiles=plan.tiles[::step][:MAX_BARE_TILES])
    rgb = first_tiles(reader, picked, MAX_BARE_TILES)
    reader.close()
    reps = -(-max(batches) // len(rgb))
    rgb = np.concatenate([rgb] * reps)
    x_all = torch.from_numpy(normalize_batch(rgb, model.normalization)).to(device)
    if device != "cpu":
        x_all = x_all.contiguous(memory_format=torch.channels_last)
    module, post = model._module, model.postprocess  # the bare TorchScript forward
    # Timed on a fresh thread, like the job's model ("wsitui-infer"): on the loaded 2-core
    # machine a TorchScript call on the thread that set torch's 2 threads ran ~10x slower.
    with ThreadPoolExecutor(1) as worker:
        rows = worker.submit(
            _bare_rows, x_all, module, post, device, batches, precisions, seconds, plan.input_size
        ).result()
    cache.close()
    return rows


def _bare_rows(
    x_all: Any,
    module: Any,
    post: dict[str, Any],
    device: str,
    batches: list[int],
    precisions: list[str],
    seconds: float,
    input_size: int,
) -> list[dict[str, Any]]:
    import torch

    rows = []
    for precision in precisions:
        for b in batches:
            chunks = [x_all[i : i + b] for i in range(0, len(x_all) - b + 1, b)]
            x = chunks[0]
            ctx = (
                torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
                if precision == "bf16"
                else torch.autocast(device_type="cpu", enabled=False)
            )
            row: dict[str, Any] = {"precision": precision, "batch": b, "input": input_size}
            try:
                with torch.inference_mode(), ctx:
                    for _ in range(3):  # warm-up: TorchScript optimises on its first calls
                        module(x, **post)
                    _sync(device)
                    if device.startswith("cuda"):
                        torch.cuda.reset_peak_memory_stats()
                    n, began = 0, time.perf_counter()
                    while True:
                        module(chunks[n % len(chunks)].clone(), **post)  # clamps in place
                        n += 1
                        _sync(device)
                        if n >= len(chunks) and time.perf_counter() - began >= seconds:
                            break
                    took = time.perf_counter() - began
                row["tiles_per_s"] = round(n * b / took, 2)
                if device.startswith("cuda"):
                    row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            except Exception as exc:  # report and carry on: the other rows still count
                row["error"] = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:160]
            rows.append(row)
            print("  bare", _fmt(row), flush=True)
    return rows


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# ---- the job -----------------------------------------------------------------------------------
def job(
    slide: Path, device: str, precision: str, batch_size: int | str, tile_size: int
) -> dict[str, Any]:
    import anyio

    from tests.cells.specs import mask_and_cells
    from tests.cells.truth import score_against_truth
    from wsitui.core.engine import Engine
    from wsitui.jobs.registry import default_executors

    peak: dict[str, float] = {}

    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            async with Engine(Path(tmp), default_executors()) as engine:
                if device.startswith("cuda"):
                    import torch

                    torch.cuda.reset_peak_memory_stats()
                began = time.perf_counter()
                spec = mask_and_cells(
                    slide,
                    "cells",
                    model="shipped",
                    device=device,
                    precision=precision,
                    batch_size=batch_size,
                    tile_size=tile_size,
                )
                with GpuSampler() as sampler:
                    w = engine.submit("check", spec)
                    await engine.wait_idle()
                wall = time.perf_counter() - began
                if device.startswith("cuda"):
                    import torch

                    peak["mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
                jobs = engine.workflow("check", w.workflow.id).jobs
                failed = [j.error for j in jobs if j.error]
                if failed:
                    return {"error": failed[0]}
                out = engine.results_dir(jobs[1])
                manifest = json.loads((out / "manifest.json").read_text())
                score = score_against_truth(out, slide)
        t = manifest["timings"]
        m = manifest["model"]
        return {
            "device": m.get("device"),
            "precision": m.get("precision"),
            "precision_reason": m.get("precision_reason"),
            "batch": manifest["tiles"]["batch_size"],
            "batch_final": m.get("batch_size_final"),
            "oom_retries": m.get("oom_retries"),
            "in_flight": m.get("tiles_in_flight"),  # the pipeline that ran (#19, local.py)
            "queued": m.get("batches_queued"),
            "trace_procs": m.get("trace_processes"),
            "read_threads": m.get("read_threads"),
            "tiles": manifest["tiles"]["processed"],
            "tiles_per_s": round(manifest["tiles"]["processed"] / max(t["segment"], 1e-9), 2),
            "wall_s": round(wall, 2),
            "f1": round(score.f1, 4),
            "cells": manifest["cells"],
            "timings": t,
            "peak_gpu_mib": peak.get("mib"),
            "gpu_util": sampler.summary(),
        }

    return anyio.run(main)


# ---- printing ----------------------------------------------------------------------------------
def _fmt(row: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v}" for k, v in row.items() if not isinstance(v, dict))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="everything on CPU, small: a dry run")
    p.add_argument(
        "--size", default=None, help="slide size WxH (default 8192x6144; --cpu 1536x1024)"
    )
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--tile-size", type=int, default=None, help="default 576; --cpu 160")
    p.add_argument("--seconds", type=float, default=None, help="time per bare-model row")
    p.add_argument("--skip-cpu-job", action="store_true", help="no CPU job for the 15x ratio")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "benchmarks/out")))
    args = p.parse_args()

    import torch

    from wsitui.slides.sample import parse_size, write_sample_slide

    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda and not args.cpu:
        print("no CUDA device visible to torch: run with --cpu for a dry run", file=sys.stderr)
        return 2
    device = "cuda:0" if cuda else "cpu"
    size = parse_size(args.size or ("8192x6144" if cuda else "1536x1024"))
    batches = [1, 4, 16] if cuda else [1, 4]
    seconds = args.seconds or (5.0 if cuda else 0.5)
    tile = args.tile_size or (576 if cuda else 160)  # 576: the job's default
    print(f"== wsitui GPU check  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"torch {torch.__version__}  device {device}", end="")
    if cuda:
        props = torch.cuda.get_device_properties(0)
        print(f"  {props.name}  {props.total_memory / 2**30:.0f} GiB  x{torch.cuda.device_count()}")
    else:
        print(f"  (dry run on CPU, {os.cpu_count()} cores)")
    results: dict[str, Any] = {"device": device, "torch": torch.__version__, "size": size}
    results["tile_size"] = tile

    with tempfile.TemporaryDirectory() as tmp:
        slide = Path(tmp) / "check.svs"
        began = time.perf_counter()
        write_sample_slide(slide, size=size, seed=args.seed)
        print(f"slide {size[0]}x{size[1]} seed {args.seed}: {time.perf_counter() - began:.1f} s")

        print("== 1. bare model (TorchScript forward, tiles already on the device)")
        results["bare"] = bare_model(slide, device, batches, ["fp32", "bf16"], seconds, tile)

        print("== 2. the SEGMENT_CELLS job (TISSUE_MASK + SEGMENT_CELLS through the engine)")
        runs: dict[str, dict[str, Any]] = {}
        for precision in ("fp32", "bf16", "auto"):
            runs[precision] = job(slide, device, precision, "auto", tile)
            print(f"  job {precision}:", _fmt(runs[precision]), flush=True)
            print("    time:", _fmt(runs[precision].get("timings", {})))
            print("    gpu util:", _fmt(runs[precision].get("gpu_util", {})), flush=True)
        if cuda and not args.skip_cpu_job:
            runs["cpu"] = job(slide, "cpu", "fp32", "auto", tile)
            print("  job cpu:", _fmt(runs["cpu"]), flush=True)
        results["job"] = runs

    print("== 3. ratios (the issue's goals)")
    ok_bare = [r for r in results["bare"] if "tiles_per_s" in r and r["precision"] == "fp32"]
    best_bare = max((r["tiles_per_s"] for r in ok_bare), default=None)
    fp32 = runs["fp32"].get("tiles_per_s")
    ratios: dict[str, Any] = {}
    if best_bare and fp32:
        ratios["job_fp32 / bare_fp32_best (goal >= 0.8)"] = round(fp32 / best_bare, 3)
    if "cpu" in runs and runs["cpu"].get("tiles_per_s") and fp32:
        ratios["job_gpu_fp32 / job_cpu (goal >= 15)"] = round(fp32 / runs["cpu"]["tiles_per_s"], 2)
    for p in ("bf16", "auto"):
        if runs[p].get("f1") is not None and runs["fp32"].get("f1") is not None:
            ratios[f"F1 {p} - F1 fp32 (|.| <= 0.005)"] = round(
                runs[p]["f1"] - runs["fp32"]["f1"], 4
            )
    for k, v in ratios.items():
        print(f"  {k}: {v}")
    results["ratios"] = ratios
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "check.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"results: {args.out / 'check.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
