"""MEASURE_CELLS benchmark: cells measured per second on generated slides with 1 and with N
worker processes in the same run, against the reference computation, and peak RSS (the job's
process and its workers together) at two cell counts.

    .venv/bin/python benchmarks/bench_measure.py [--size 40000x30000] [--small 8192x6144]
        [--seed 3] [--tile-size 1024] [--baseline-tiles 12] [--workers 2]

The generator's own nuclei (its truth, as 24-vertex ellipses) stand for the upstream
SEGMENT_CELLS job's cells: segmenting a 40k x 30k slide with a model is not what is measured
here, and the truth has the cell count and spacing of the slide. They are written as
SEGMENT_CELLS writes cells.geojson (one Feature a line) with its manifest, and the job's own
run (`_CellMeasurement`) measures them with a stand-in JobContext (no engine: the engine's cost per
job is not per cell). Each slide's job runs in its own process, so its peak RSS is its own:
a memory that grew with the slide would show between the two sizes (and in the RSS sampled
every 0.5 s per quarter of the run, of the job's process plus its worker processes; CPU
seconds count the workers too). The large slide is measured twice, with 1 worker (the serial
path, on the job's thread) and with `--workers`, one after the other: the ratio of their rates
is the speed-up on this machine at this load. The baseline: `reference.measure_tile` (the per-region
regionprops computation the job used before) and the job's `measure_tile` on the same tiles,
spread over the large slide, timed one after the other in this process, with the largest
difference of their values. The goal (issue #16): 190,000 cells of a 40k x 30k slide in
< 2 min with flat memory, i.e. >= 1,583 cells/s. Prints the load average: the machine is
shared. Slides are cached in benchmarks/.cache.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, sample


def write_upstream(slide: Path, out: Path) -> int:
    """cells.geojson + manifest.json of the slide's true nuclei, as SEGMENT_CELLS writes them."""
    import numpy as np

    from wsitui.core.digest import sha256_file
    from wsitui.slides.sample import load_truth

    truth = load_truth(slide)
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with (out / "cells.geojson").open("w", encoding="utf-8") as f:
        f.write('{"type":"FeatureCollection","features":[\n')
        for i, (cx, cy, a, b, th) in enumerate(truth.nuclei.tolist()):
            x = cx + a * np.cos(t) * math.cos(th) - b * np.sin(t) * math.sin(th)
            y = cy + a * np.cos(t) * math.sin(th) + b * np.sin(t) * math.cos(th)
            ring = [[round(float(p), 2), round(float(q), 2)] for p, q in zip(x, y, strict=True)]
            ring.append(ring[0])
            feature = {
                "type": "Feature",
                "id": f"cell-{i}",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": "Nucleus", "color": [0, 90, 200]},
                    "measurements": {
                        "Centroid X µm": cx * truth.mpp,
                        "Centroid Y µm": cy * truth.mpp,
                    },
                },
            }
            f.write((",\n" if n else "") + json.dumps(feature, separators=(",", ":")))
            n += 1
        f.write("\n]}\n")
    manifest = {
        "mpp": truth.mpp,
        "tiles": {"scale": 1.0},
        "artifacts": [{"path": "cells.geojson", "sha256": sha256_file(out / "cells.geojson")}],
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return n


@dataclass
class Ctx:
    """A stand-in JobContext: what the engine gives a running job, without the engine."""

    job: Any
    params: Any
    results_dir: Path
    shards_dir: Path
    upstream: tuple[Any, ...]
    checkpoint: Any = None
    reports: list[tuple[int, int]] = field(default_factory=list)

    def report(self, done: int, total: int, counters: Any = None) -> None:
        self.reports.append((done, total))

    def restart_progress(self, reason: str) -> None:
        pass

    def set_stage(self, stage: str) -> None:
        print(f"  stage: {stage}", file=sys.stderr)

    def cancel_requested(self) -> bool:
        return False

    def check_cancel(self) -> None:
        pass


def run_job(slide: Path, tile_size: int, workers: int) -> dict[str, Any]:
    """Run the job on `slide`'s true nuclei; what it measured, its time and its memory."""
    from types import SimpleNamespace

    from wsitui.core.executor import UpstreamJob
    from wsitui.core.records import JobState
    from wsitui.jobs.measure_cells.executor import _CellMeasurement
    from wsitui.jobs.measure_cells.params import MeasureCellsParams

    with tempfile.TemporaryDirectory() as tmp:
        up_dir = Path(tmp) / "cells"
        t0 = time.perf_counter()
        n = write_upstream(slide, up_dir)
        upstream_s = time.perf_counter() - t0
        out = Path(tmp) / "measure"
        (out / "shards").mkdir(parents=True)
        up = UpstreamJob(
            "cells", "cells-job", "SEGMENT_CELLS", str(slide), JobState.SUCCEEDED, up_dir
        )
        ctx = Ctx(
            job=SimpleNamespace(id="bench", attempt=1, slide=str(slide)),
            params=MeasureCellsParams(tile_size=tile_size, workers=workers),
            results_dir=out,
            shards_dir=out / "shards",
            upstream=(up,),
        )
        rss: list[tuple[float, float]] = []
        seen = [0]  # the most worker processes alive at a sample
        done = threading.Event()

        def sample_rss() -> None:
            while not done.wait(0.5):
                mb, children = _tree_rss_mb()
                rss.append((time.perf_counter() - t1, mb))
                seen[0] = max(seen[0], children)

        base = _rss_now_mb()
        cpu0, cpu_workers0 = _cpu_s(), _cpu_s(children_only=True)
        t1 = time.perf_counter()
        threading.Thread(target=sample_rss, daemon=True).start()
        _CellMeasurement(ctx, ctx.params).run()  # type: ignore[arg-type]
        wall = time.perf_counter() - t1
        cpu = _cpu_s() - cpu0
        cpu_workers = _cpu_s(children_only=True) - cpu_workers0
        done.set()
        manifest = json.loads((out / "manifest.json").read_text())
        quarters = [
            round(max((r for t, r in rss if q * wall / 4 <= t < (q + 1) * wall / 4), default=0))
            for q in range(4)
        ]
        return {
            "upstream_cells": n,
            "upstream_s": round(upstream_s, 1),
            "cells": manifest["cells"],
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "cpu_workers_s": round(cpu_workers, 2),
            "timings": manifest["timings"],
            "rss_before_mb": round(base),
            "rss_quarters_mb": quarters,
            "peak_rss_mb": round(peak_rss_mb()),  # the job's process alone
            "peak_tree_rss_mb": round(max((r for _, r in rss), default=base)),
            "worker_peak_rss_mb": round(_children_peak_rss_mb()),
            "workers": workers,
            "worker_processes_seen": seen[0],
            "parquet_mb": round((out / "measurements.parquet").stat().st_size / 1e6, 1),
            "geojson_mb": round((out / "cells.geojson").stat().st_size / 1e6, 1),
        }


def baseline(slide: Path, tile_size: int, n_tiles: int) -> dict[str, Any]:
    """The reference and the job's measurement of the same tiles, timed in turn."""
    import numpy as np

    from wsitui.jobs.measure_cells import reference
    from wsitui.jobs.measure_cells.executor import _tiles
    from wsitui.jobs.measure_cells.measure import Scale, measure_tile
    from wsitui.jobs.measure_cells.source import index_cells
    from wsitui.jobs.measure_cells.stain import Stains
    from wsitui.slides.reader import open_slide
    from wsitui.slides.sample import load_truth
    from wsitui.slides.style import EOSIN_OD, HEMATOXYLIN_OD

    mpp = load_truth(slide).mpp
    with tempfile.TemporaryDirectory() as tmp:
        write_upstream(slide, Path(tmp))
        index = index_cells(Path(tmp), lambda: None)
        tiles = _tiles(index, tile_size)
        picks = np.unique(np.linspace(0, len(tiles) - 1, n_tiles).astype(int))
        chosen = [tiles[i][1] for i in picks.tolist()]
        h, e = (tuple(np.asarray(v) / np.linalg.norm(v)) for v in (HEMATOXYLIN_OD, EOSIN_OD))
        stains = Stains(h, e, 240.0, "param")  # type: ignore[arg-type]
        sc = Scale(1.0, mpp, 5.0 / mpp)
        reader = open_slide(str(slide))
        try:
            seconds = {"reference": 0.0, "fast": 0.0}
            cpu = {"reference": 0.0, "fast": 0.0}
            worst = 0.0
            for own in chosen:
                got = {}
                for name, fn in (("reference", reference.measure_tile), ("fast", measure_tile)):
                    t0, c0 = time.perf_counter(), _cpu_s()
                    got[name] = fn(reader, index, own, stains, sc)
                    seconds[name] += time.perf_counter() - t0
                    cpu[name] += _cpu_s() - c0
                ref, fast = got["reference"], got["fast"]
                assert np.array_equal(np.isnan(ref), np.isnan(fast))
                diff = np.abs(fast - ref) / np.maximum(1.0, np.abs(ref))
                worst = max(worst, float(np.nanmax(diff)))
        finally:
            reader.close()
    cells = sum(len(own) for own in chosen)
    return {
        "tiles": len(chosen),
        "cells": cells,
        "reference_cells_per_s": cells / seconds["reference"],
        "fast_cells_per_s": cells / seconds["fast"],
        "reference_cells_per_cpu_s": cells / cpu["reference"],
        "fast_cells_per_cpu_s": cells / cpu["fast"],
        "max_relative_difference": worst,
    }


def _child(args: argparse.Namespace) -> None:
    size = tuple(int(v) for v in args.child.split("x"))
    job = run_job(sample((size[0], size[1]), args.seed), args.tile_size, args.workers)
    print(json.dumps(job))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="40000x30000")
    ap.add_argument("--small", default="8192x6144", help="the second size, for flat memory")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--tile-size", type=int, default=1024)
    ap.add_argument("--baseline-tiles", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the second run")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # run one job, print its JSON
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    import subprocess

    print(f"load average at start: {os.getloadavg()} on {os.cpu_count()} CPUs")
    runs = [(args.small, args.workers), (args.size, 1), (args.size, args.workers)]
    jobs: dict[tuple[str, int], dict[str, Any]] = {}
    for size, workers in runs:
        w, h = (int(v) for v in size.split("x"))
        sample((w, h), args.seed)  # generated here (once), not inside the timed child
        cmd = [sys.executable, __file__, "--child", size, "--seed", str(args.seed)]
        cmd += ["--tile-size", str(args.tile_size), "--workers", str(workers)]
        load = os.getloadavg()
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        job = jobs[size, workers] = json.loads(done.stdout.strip().splitlines()[-1])
        rate = job["cells"] / job["wall_s"]
        print(
            f"slide {size}, up to {workers} worker(s), {job['worker_processes_seen']} worker "
            f"processes seen (load average before {load[0]:.2f}): {job['cells']:,} cells "
            f"measured in {job['wall_s']:.1f} s = {rate:,.0f} cells/s; {job['cpu_s']:.1f} CPU s "
            f"({job['cpu_workers_s']:.1f} in workers) = {job['cells'] / job['cpu_s']:,.0f} "
            f"cells per CPU s; timings {job['timings']}",
            flush=True,
        )
        print(
            f"  RSS before {job['rss_before_mb']} MB; job and workers together: max per "
            f"quarter of the run {job['rss_quarters_mb']} MB, peak {job['peak_tree_rss_mb']} MB "
            f"(job process {job['peak_rss_mb']} MB, largest worker {job['worker_peak_rss_mb']} "
            f"MB); parquet {job['parquet_mb']} MB, geojson {job['geojson_mb']} MB"
        )
    w, h = (int(v) for v in args.size.split("x"))
    base = baseline(sample((w, h), args.seed), args.tile_size, args.baseline_tiles)
    ratio = base["fast_cells_per_s"] / base["reference_cells_per_s"]
    print(
        f"measuring {base['cells']:,} cells of {base['tiles']} tiles of {args.size}: "
        f"reference (before) {base['reference_cells_per_s']:,.0f} cells/s, this job's "
        f"{base['fast_cells_per_s']:,.0f} cells/s: {ratio:.1f}x (per CPU s: "
        f"{base['reference_cells_per_cpu_s']:,.0f} and {base['fast_cells_per_cpu_s']:,.0f}); "
        f"largest relative difference of their values {base['max_relative_difference']:.1e}"
    )
    one, big = jobs[args.size, 1], jobs[args.size, args.workers]
    rate1, rate = one["cells"] / one["wall_s"], big["cells"] / big["wall_s"]
    small = jobs[args.small, args.workers]
    print(
        f"{args.workers} workers against 1 on {args.size}: {rate:,.0f} against {rate1:,.0f} "
        f"cells/s = {rate / rate1:.2f}x; peak RSS (job and workers) {big['peak_tree_rss_mb']} "
        f"against {one['peak_tree_rss_mb']} MB"
    )
    print(
        f"goal: >= 1,583 cells/s (190,000 cells in 120 s); measured {rate:,.0f} cells/s "
        f"end to end with {args.workers} workers ({'met' if rate >= 190_000 / 120 else 'NOT met'}"
        f" on this machine now), {big['cells'] / big['cpu_s']:,.0f} cells per CPU s; peak RSS "
        f"{small['peak_tree_rss_mb']} MB at {small['cells']:,} cells, "
        f"{big['peak_tree_rss_mb']} MB at {big['cells']:,} cells"
    )
    print(f"load average at end: {os.getloadavg()}")


def _cpu_s(children_only: bool = False) -> float:
    """CPU seconds (user + system) of this process, all threads, and of its ended children
    (the worker processes); of the children alone when `children_only`."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = 0.0 if children_only else r.ru_utime + r.ru_stime
    return mine + c.ru_utime + c.ru_stime


def _children_peak_rss_mb() -> float:
    """Peak RSS of the largest ended child process (a worker)."""
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _tree_rss_mb() -> tuple[float, int]:
    """RSS now of this process and its children (the worker processes), and how many, read
    from /proc (no psutil: it is not a dependency)."""
    children = _descendants(os.getpid())
    total = _rss_now_mb()
    for pid in children:
        total += _rss_of_mb(pid)  # 0 when it ended meanwhile
    # spawn's resource tracker is a child too: not a worker
    workers = sum(1 for pid in children if "resource_tracker" not in _cmdline(pid))
    return total, workers


def _descendants(root: int) -> list[int]:
    """The live descendants of process `root`, from each process's parent in /proc/PID/stat."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        # after the command name (in parentheses, may hold spaces): state, then the parent
        parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = [c for c, p in parents.items() if p == pid]
        found += kids
        todo += kids
    return found


def _rss_of_mb(pid: int) -> float:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _rss_now_mb() -> float:
    return _rss_of_mb(os.getpid())


if __name__ == "__main__":
    main()
