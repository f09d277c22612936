"""Where one SEGMENT_CELLS tile's time goes, end to end, on CPU; and two candidate speed-ups.

    .venv/bin/python benchmarks/profile_cells.py [--size 2048x1536] [--seed 11] [--tiles 3]
        [--candidates] [--h-skip] [--jobs 11,12]

Profile (median over `--tiles` tissue tiles of a generated slide, the shipped model, the job's
own defaults): read, normalise, network (`fcn`), instanseg's post-processing (the rest of the
TorchScript call; its heaviest operators from torch.profiler), tracing + records (`extract`),
the seam merge (`settle_seams`) and the write (`CellWriter.add`).

`--jobs SEEDS` runs whole TISSUE_MASK + SEGMENT_CELLS jobs, one slide per seed, one after the
other in one process (one engine, as a cohort runs them): wall and CPU seconds of each job and
of the steps before its first tile and after its last (model load, the split network's build
and probe check, tissue, writing). The first job pays what a process pays once; the others
show what each further slide of a cohort pays.

`--candidates` measures, on the same tiles, the candidates of issue #19 whose results must not
move (cells matched one-to-one with today's at IoU >= 0.9 for >= 99 %):
  - instanseg's `window_size` smaller than its default 32 px (nuclei here are at most
    `max_nucleus_um` across), and
  - two tiles in flight with one torch thread each, against one tile with two threads, and
  - the network split from instanseg's post-processing (`fastnet.py`): frozen, channels-last,
    fp32 and bf16, against the network inside the model's own TorchScript call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from common import peak_rss_mb, sample, tissue_plan


def _ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    out = fn()
    return (time.perf_counter() - began) * 1000, out


def setup(size: tuple[int, int], seed: int, n: int) -> dict[str, Any]:

    from wsitui.jobs.segment_cells.params import SegmentCellsParams
    from wsitui.models import ModelCache, resolve
    from wsitui.slides.reader import open_slide

    slide = sample(size, seed)
    params = SegmentCellsParams()
    cache = ModelCache()
    model = cache.get(resolve("shipped"), "cpu")  # InstanSeg: the default is classical
    reader = open_slide(slide)
    plan = tissue_plan(reader, model.pixel_size, params)
    # Tiles from the middle of the plan: full of tissue, not slide-edge slivers.
    mid = len(plan.tiles) // 2
    tiles = plan.tiles[max(0, mid - n // 2) : max(0, mid - n // 2) + n]
    return {"params": params, "model": model, "reader": reader, "plan": plan, "tiles": tiles}


def profile(ctx: dict[str, Any]) -> None:
    import torch

    from wsitui.jobs.segment_cells.extract import extract
    from wsitui.jobs.segment_cells.fastnet import split
    from wsitui.jobs.segment_cells.merge import settle_seams
    from wsitui.jobs.segment_cells.source import read_tile
    from wsitui.jobs.segment_cells.write import CellWriter
    from wsitui.models.normalize import normalize_batch

    model, reader, plan, params = ctx["model"], ctx["reader"], ctx["plan"], ctx["params"]
    module, post = model._module, model.postprocess
    fast, _why = split(model, "fp32")
    steps: dict[str, list[float]] = {}
    ops: dict[str, float] = {}

    def add(name: str, ms: float) -> None:
        steps.setdefault(name, []).append(ms)

    with torch.inference_mode():
        warm = torch.from_numpy(normalize_batch(read_tile(reader, plan, ctx["tiles"][0]).rgb[None]))
        for _ in range(3):  # TorchScript optimises each entry point on its first calls
            module(warm, **post)
            module.fcn(warm)
            if fast is not None:
                fast.network(warm)
        for tile in ctx["tiles"]:
            ms, image = _ms(lambda t=tile: read_tile(reader, plan, t))
            add("read", ms)
            ms, arr = _ms(lambda im=image: normalize_batch(im.rgb[None], model.normalization))
            add("normalise", ms)
            x = torch.from_numpy(arr)
            ms, _ = _ms(lambda x=x: module.fcn(x))
            add("network (fcn)", ms)
            if fast is not None:  # the same network frozen, channels-last (the job's, fastnet.py)
                ms, _ = _ms(lambda x=x: fast.network(x))
                add("network, frozen channels-last (job)", ms)
            ms, out = _ms(lambda x=x: module(x, **post))
            add("whole TorchScript call", ms)
            labels = out[:, 0].numpy().astype(np.int32)[0]
            ms, rec = _ms(
                lambda lab=labels, im=image: extract(
                    lab,
                    im.tile,
                    scale=plan.scale,
                    valid=(im.h, im.w),
                    level_dims=plan.geometry.level_dimensions,
                    band=plan.band,
                    min_area=params.min_area_um2 / plan.model_px**2,
                )
            )
            add("tracing + records (extract)", ms)
            key = (tile.col, tile.row)
            ms, keep = _ms(lambda r=rec, k=key: settle_seams([(k, r)]))
            add("seam merge (settle_seams)", ms)
            with (
                tempfile.TemporaryDirectory() as tmp,
                CellWriter(Path(tmp), job_id="p", mpp=plan.slide_mpp, gz=False) as w,
            ):
                ms, _ = _ms(lambda r=rec, k=key, kp=keep: w.add(r, kp[k], k))
            add("write (CellWriter.add)", ms)
            add("cells", float(len(rec)))
        # The operator breakdown after the timed loop: the profiler slows what it watches.
        for tile in ctx["tiles"]:
            x = torch.from_numpy(
                normalize_batch(read_tile(reader, plan, tile).rgb[None], model.normalization)
            )
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                module(x, **post)
            for ev in prof.key_averages():
                ops[ev.key] = ops.get(ev.key, 0.0) + ev.self_cpu_time_total / 1000
    med = {k: statistics.median(v) for k, v in steps.items()}
    cells = med.pop("cells")
    med["instanseg post-processing"] = med["whole TorchScript call"] - med["network (fcn)"]
    order = [
        "read",
        "normalise",
        "network (fcn)",
        "instanseg post-processing",
        "tracing + records (extract)",
        "seam merge (settle_seams)",
        "write (CellWriter.add)",
    ]
    total = sum(med[k] for k in order)
    if "network, frozen channels-last (job)" in med:
        print(
            f"network frozen channels-last (the job's since fastnet.py): "
            f"{med['network, frozen channels-last (job)']:.0f} ms against "
            f"{med['network (fcn)']:.0f} ms"
        )
    n = len(ctx["tiles"])
    print(f"one {plan.input_size}-px tile (median of {n}, ~{cells:.0f} cells/tile), {_cores()}")
    print("| step | ms | share |\n|---|---:|---:|")
    for k in order:
        print(f"| {k} | {med[k]:.0f} | {100 * med[k] / total:.0f} % |")
    print(f"| total | {total:.0f} | |")
    print(f"\nheaviest operators inside the TorchScript call (self CPU ms per tile, {n} tiles):")
    for name, v in sorted(ops.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {v / n:8.1f}  {name}")


def candidates(ctx: dict[str, Any], windows: list[int]) -> None:
    import torch

    from wsitui.jobs.segment_cells.accel import label_agreement
    from wsitui.jobs.segment_cells.source import read_tile
    from wsitui.models.device import set_cpu_threads
    from wsitui.models.normalize import normalize_batch

    model, reader, plan = ctx["model"], ctx["reader"], ctx["plan"]
    module, post = model._module, dict(model.postprocess)
    xs = [
        torch.from_numpy(normalize_batch(read_tile(reader, plan, t).rgb[None], model.normalization))
        for t in ctx["tiles"]
    ]

    from wsitui.jobs.segment_cells.fastnet import split

    calls: dict[str, Any] = {"torchscript": module}
    for precision in ("fp32", "bf16"):
        got, why = split(model, precision)
        if got is None:
            print(f"split network {precision} unavailable: {why}")
        else:
            calls[f"split {precision}"] = got

    def run(x: torch.Tensor, network: str = "torchscript", **kw: Any) -> np.ndarray:
        with torch.inference_mode():
            out = calls[network](x.clone(), **{**post, **kw})
            return out[0, 0].numpy().astype(np.int32)

    def one_to_one(ref: list[np.ndarray], got: list[np.ndarray]) -> str:
        share = []
        for r, g in zip(ref, got, strict=True):
            n_ref, n_got = len(np.unique(r)) - 1, len(np.unique(g)) - 1
            f1 = label_agreement(r, g, iou=0.9)  # matched pairs at IoU >= 0.9
            matched = f1 * (n_ref + n_got) / 2
            share.append(matched / max(n_ref, 1))
        return f"{100 * min(share):.2f} % (worst tile)"

    def timed(threads: int, in_flight: int, **kw: Any) -> tuple[float, list[np.ndarray]]:
        set_cpu_threads(threads)
        for _ in range(2):  # warm-up: TorchScript re-optimises after a change
            run(xs[0], **kw)
        began, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(in_flight) as pool:
            got = list(pool.map(lambda x: run(x, **kw), xs))
        cpu_ms[0] = 1000 * (time.process_time() - cpu) / len(xs)
        return (time.perf_counter() - began) / len(xs), got

    # CPU time per tile too: on a loaded machine wall time swings with the other work.
    cpu_ms = [0.0]
    base_s, ref = timed(2, 1)
    print(
        f"\nbaseline (window_size default, 1 tile x 2 threads): {1000 * base_s:.0f} ms/tile, "
        f"CPU {cpu_ms[0]:.0f} ms/tile"
    )
    runs: list[tuple[str, int, int, dict[str, Any]]] = [
        *[(f"window_size={w}", 2, 1, {"window_size": w}) for w in windows],
        *[(f"1 thread, window_size={w}", 1, 1, {"window_size": w}) for w in (32, *windows)],
        ("2 tiles in flight x 1 thread", 1, 2, {}),
        *[
            (f"1 thread, window_size=24, network {n}", 1, 1, {"window_size": 24, "network": n})
            for n in calls
        ],
        *[
            (
                f"2 tiles x 1 thread, window_size=24, network {n}",
                1,
                2,
                {"window_size": 24, "network": n},
            )
            for n in calls
        ],
        ("baseline again", 2, 1, {}),
    ]
    for name, threads, in_flight, kw in runs:
        s, got = timed(threads, in_flight, **kw)
        print(
            f"{name}: {1000 * s:.0f} ms/tile ({base_s / s:.2f}x), CPU {cpu_ms[0]:.0f} ms/tile, "
            "cells matched one-to-one at "
            f"IoU>=0.9: {one_to_one(ref, got)}",
            flush=True,
        )
    set_cpu_threads(2)


def _cores() -> str:
    import os

    load = os.getloadavg()[0]
    return f"{len(os.sched_getaffinity(0))} cores, load average {load:.1f}"


H_OD = 0.25  # haematoxylin optical density of a stained nucleus pixel (colour deconvolution)


def haematoxylin_skip(slides: list[tuple[tuple[int, int], int]], shares: list[float]) -> None:
    """Issue #19's candidate "skip tissue tiles without haematoxylin signal": per tissue tile of
    each generated slide, the share of its read region's pixels (every 2nd) with haematoxylin
    OD > H_OD, and the true nuclei in its core; a threshold's skip rate and false skips (true
    nuclei in skipped tiles' cores)."""

    from wsitui.jobs.segment_cells.plan import plan_tiles
    from wsitui.jobs.segment_cells.source import read_tile
    from wsitui.jobs.tissue_mask.mask import compute_tissue_mask
    from wsitui.slides.reader import open_slide
    from wsitui.slides.sample import load_truth

    h_vec = np.linalg.inv(np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]]))[
        :, 0
    ]  # skimage's hed_from_rgb, haematoxylin column
    print(f"== haematoxylin skip, share of pixels with H OD > {H_OD}")
    for size, seed in slides:
        slide = sample(size, seed)
        truth = load_truth(slide).nuclei[:, :2]
        rows = []
        with open_slide(slide) as reader:
            tm = compute_tissue_mask(reader)
            plan = plan_tiles(
                reader,
                slide_mpp=reader.mpp or 0.5,
                model_px=0.5,
                tile_size=576,
                max_nucleus_um=20,
                tissue=(tm.mask, tm.downsample),
            )
            for t in plan.tiles:
                img = read_tile(reader, plan, t)
                px = np.asarray(img.rgb[: img.h : 2, : img.w : 2], np.float32).reshape(-1, 3)
                h = -np.log(np.maximum(px, 1) / 255) @ h_vec
                x, y, w, hh = t._level0(t.core)
                inside = (truth[:, 0] >= x) & (truth[:, 0] < x + w)
                inside &= (truth[:, 1] >= y) & (truth[:, 1] < y + hh)
                rows.append((float(np.mean(h > H_OD)), int(inside.sum())))
        arr = np.array(rows)
        empty = int((arr[:, 1] == 0).sum())
        for share in shares:
            skip = arr[:, 0] < share
            print(
                f"{slide.name}: {len(arr)} tissue tiles, share < {share}: skipped {skip.sum()} "
                f"({skip.mean():.1%}), true nuclei lost {int(arr[skip, 1].sum())} of "
                f"{int(arr[:, 1].sum())}; tiles without a true nucleus {empty}"
            )


def _cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# The steps `--jobs` times: (module, function) wrapped where the job calls them.
JOB_STEPS = (
    ("wsitui.models.loaded", "load"),  # torch import, model file read, check, load, test tile
    ("wsitui.jobs.segment_cells.fastnet", "_build"),  # split network: copy, freeze, probe
    ("wsitui.jobs.segment_cells.accel", "accelerate"),  # precision and runner, per job
    ("wsitui.jobs.segment_cells.executor", "compute_tissue_mask"),  # without an upstream mask
    ("wsitui.jobs.segment_cells.executor", "plan_tiles"),
    ("wsitui.jobs.segment_cells.backends.local", "run_tiles"),  # the tiles
    ("wsitui.jobs.segment_cells.executor", "settle_seams"),
)


def jobs_profile(size: tuple[int, int], seeds: list[int], model: str) -> None:
    """`--jobs`: whole jobs, one slide per seed, in one process (see the module doc)."""
    import functools
    import importlib
    import json

    import anyio

    from tests.cells.specs import mask_and_cells
    from wsitui.core.engine import Engine
    from wsitui.jobs.registry import default_executors

    spent: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*a: Any, **k: Any) -> Any:
            t, c = time.perf_counter(), _cpu_s()
            try:
                return fn(*a, **k)
            finally:
                row = spent.setdefault(name, [0, 0.0, 0.0])
                row[0] += 1
                row[1] += time.perf_counter() - t
                row[2] += _cpu_s() - c  # the process: other threads' CPU too

        return run

    for mod_name, fn_name in JOB_STEPS:
        mod = importlib.import_module(mod_name)
        setattr(mod, fn_name, timed(fn_name, getattr(mod, fn_name)))
    import wsitui.slides.synthetic.generator as generator

    generator.MIN_SIDE = min(generator.MIN_SIDE, *size)  # this benchmark's 1024 x 768 too
    slides = [sample(size, seed) for seed in seeds]  # generated once, before any timing

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with Engine(Path(tmp), default_executors()) as engine:
                for i, slide in enumerate(slides):
                    spent.clear()
                    t, c = time.perf_counter(), _cpu_s()
                    w = engine.submit(f"p{i}", mask_and_cells(slide, "cells", model=model))
                    await engine.wait_idle()
                    wall, cpu = time.perf_counter() - t, _cpu_s() - c
                    job = engine.workflow(f"p{i}", w.workflow.id).jobs[1]
                    if job.error:
                        raise SystemExit(f"job failed: {job.error}")
                    m = json.loads((engine.results_dir(job) / "manifest.json").read_text())
                    tm = m["timings"]
                    print(
                        f"job {i + 1} ({slide.name}): {wall:.2f} s wall, {cpu:.2f} CPU s, "
                        f"{m['tiles']['processed']} tiles, {m['cells']} cells, "
                        f"{m['model'].get('network_runtime', '')}; manifest: load_model "
                        f"{tm.get('load_model', 0):.2f}, segment {tm['segment']:.2f}, write "
                        f"{tm['write']:.2f} s"
                    )
                    for name, (n, w_s, c_s) in spent.items():
                        print(f"  {name:<20} x{n:<3.0f} {w_s:7.3f} s wall {c_s:7.3f} CPU s")

    print(f"== jobs {time.strftime('%Y-%m-%d %H:%M %Z')}, load average {_load()}")
    anyio.run(run)
    print(f"peak RSS {peak_rss_mb():.0f} MB")


def _load() -> str:
    import os

    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> int:
    from wsitui.slides.sample import parse_size

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="2048x1536")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--tiles", type=int, default=3)
    p.add_argument("--candidates", action="store_true")
    p.add_argument("--skip-profile", action="store_true")
    p.add_argument("--windows", default="16,24")
    p.add_argument(
        "--h-skip",
        action="store_true",
        help="skip rate and false skips of 'no haematoxylin signal' on generated slides",
    )
    p.add_argument("--jobs", default="", help="whole jobs in one process, one slide per seed")
    p.add_argument("--model", default="shipped", help="--jobs: the cells jobs' model")
    args = p.parse_args()
    if args.jobs:
        w, h = (int(v) for v in args.size.lower().split("x"))  # 1,024 x 768 too (see there)
        jobs_profile((w, h), [int(v) for v in args.jobs.split(",")], args.model)
        return 0
    if args.h_skip:
        slides = [((2048, 1536), 11), ((2048, 1536), 5), ((4096, 3072), 11), ((4096, 3072), 3)]
        haematoxylin_skip(slides, [0.001, 0.005, 0.01])
        return 0
    ctx = setup(parse_size(args.size), args.seed, args.tiles)
    print(f"== profile {time.strftime('%Y-%m-%d %H:%M %Z')}")
    # On a worker thread, like the job's model ("wsitui-infer"): measured here, a TorchScript
    # call on the main thread with 2 intra-op threads ran ~10x slower than on a worker thread on
    # the loaded 2-core machine (OpenMP threads waiting on busy cores).
    with ThreadPoolExecutor(1, thread_name_prefix="profile") as worker:
        if not args.skip_profile:
            worker.submit(profile, ctx).result()
        if args.candidates:
            worker.submit(candidates, ctx, [int(w) for w in args.windows.split(",")]).result()
    ctx["reader"].close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
