"""A whole classical SEGMENT_CELLS job (the default model) on worker processes against the
job's own thread, run on demand, never in CI.

    .venv/bin/python benchmarks/bench_classical_workers.py [--size 8192x6144] [--seed 3]
        [--workers auto] [--rounds 2]

One generated slide; its tissue mask once; then SEGMENT_CELLS with `workers = 1` (the baseline,
what every classical job ran before 2026-12-06) and with `--workers` (`auto`: the job's own
choice, one per core within memory_gb), alternated `--rounds` times in fresh data dirs of one
process. Prints each run's wall seconds, the job's own CPU seconds (this process: the workers'
are not in it), the ratio of the medians, and whether the cells are the same (they must be:
it stops otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import sample

from tests.cells.specs import mask_and_cells
from wsitui.core.records import JobState, WorkflowSpec


def _workflow(slide: Path, workers: int | None) -> WorkflowSpec:
    params: dict[str, Any] = {"model": "classical"}
    if workers is not None:
        params["workers"] = workers
    return mask_and_cells(slide, **params)


async def _run(data: Path, slide: Path, workers: int | None) -> dict[str, Any]:
    import anyio

    from wsitui.core.engine import Engine
    from wsitui.jobs.segment_cells.executor import SegmentCellsExecutor
    from wsitui.jobs.tissue_mask.executor import TissueMaskExecutor

    async with Engine(data, [TissueMaskExecutor(), SegmentCellsExecutor()]) as engine:
        w = engine.submit("b", _workflow(slide, workers))
        with anyio.fail_after(3600):
            await engine.wait_idle()
        job = engine._jobs[w.jobs[1].id]
        if job.state is not JobState.SUCCEEDED:
            raise SystemExit(f"cells job {job.state}: {job.error}")
        out = engine.results_dir(job)
    manifest = json.loads((out / "manifest.json").read_text())
    features = json.loads((out / "cells.geojson").read_text())["features"]
    return {
        "job_s": manifest["timings"]["total"],
        "workers": manifest["model"].get("workers"),
        "tiles": manifest["tiles"]["processed"],
        "cells": sorted(json.dumps(f["geometry"]) for f in features),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="8192x6144")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--workers", default="auto", help="'auto' or a number")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    slide = sample((w, h), args.seed)
    candidate = None if args.workers == "auto" else int(args.workers)

    import anyio

    cores = len(os.sched_getaffinity(0))
    print(f"{slide.name}: {cores} cores, load {os.getloadavg()[0]:.1f}", flush=True)
    times: dict[str, list[float]] = {"baseline": [], "candidate": []}
    reference: list[str] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, workers in (("baseline", 1), ("candidate", candidate)):
                began = time.perf_counter()
                cpu = time.process_time()
                got = anyio.run(_run, Path(tmp) / f"{name}{r}", slide, workers)
                wall = time.perf_counter() - began
                times[name].append(got["job_s"])
                print(
                    f"  round {r} {name:9s} workers {got['workers']}: cells job "
                    f"{got['job_s']:.1f} s (mask + cells wall {wall:.1f} s, this process's CPU "
                    f"{time.process_time() - cpu:.1f} s), {got['tiles']} tiles, "
                    f"{len(got['cells'])} cells, load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                if reference is None:
                    reference = got["cells"]
                elif got["cells"] != reference:
                    print("  cells differ from the baseline's: stop", file=sys.stderr)
                    return 1
    base, cand = statistics.median(times["baseline"]), statistics.median(times["candidate"])
    print(f"cells job median: baseline {base:.1f} s, candidate {cand:.1f} s: {base / cand:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
