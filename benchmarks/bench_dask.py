"""SEGMENT_CELLS on the local backend and on Dask, side by side in one run; then, from the
per-tile times measured here, what 10 and 100 Dask workers would give for a cohort of slides.

    .venv/bin/python benchmarks/bench_dask.py [--size 8192x6144] [--seed 11] [--model classical]
        [--cohort 100] [--cohort-tiles 0]

Variants, each in its own process (its peak RSS is the client's: Dask workers are other
processes, whose RSS is printed apart):

    local    the TISSUE_MASK + SEGMENT_CELLS jobs through the engine, backend = "local"
    dask-1   the same jobs, backend = "dask", on a LocalCluster of 1 worker process
    dask-2   the same, on 2 worker processes
    cli-1x2  real `dask scheduler` and `dask worker --nthreads 2` processes, as users start them
    cli-2x1  a `dask scheduler` and two `dask worker --nthreads 1` processes

`--variants local,cli-2x1` runs some of them. Each Dask variant also reports the torch threads
its workers ran the model with (the manifest's `dask.torch_threads_by_worker`; the classical
model runs no torch).

Per variant: tiles/s over the segmenting stage, work per tile on a worker (read + infer +
extract, summed over threads that share the cores), overhead per tile (the extra wall time per
tile against the local backend on the same cores), client peak RSS, and the cells found (they
must be equal). `dask-1` also measures the Dask round trip per task (submit, schedule, run a
no-op, result back through the same bounded `as_completed` window) and the per-tile compute
times from Dask's task stream.

The simulation replays those per-tile times (sampled) on W workers like the measured one
(its threads each running one tile at a time, timed with its neighbours busy), adds the
measured Dask round trip per tile (one at a time: a pessimistic bound) and the client's
per-tile work (shard write, bookkeeping; serial per job, two jobs at once as the engine runs
them), and reports the cohort's makespan and tiles/s for W = 1, 10 and 100 (default: 1000
tissue tiles a slide, a 40x slide at the model's 0.5 µm/px in 1024 px tiles). It assumes the
workers are fed (the window is twice the worker threads) and reads no slides over a network.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, sample

JOBS_AT_ONCE = 2  # SegmentCellsExecutor.threads: jobs of the type running at once


def run_job(slide: Path, params: dict[str, Any]) -> dict[str, Any]:
    import anyio

    from tests.cells.specs import mask_and_cells
    from wsitui.core.engine import Engine
    from wsitui.jobs.registry import default_executors

    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            async with Engine(Path(tmp), default_executors()) as engine:
                w = engine.submit(
                    "bench",
                    mask_and_cells(slide, "cells", **params),
                )
                await engine.wait_idle()
                job = engine.workflow("bench", w.workflow.id).jobs[1]
                if job.error:
                    raise SystemExit(f"job failed: {job.error}")
                out = engine.results_dir(job)
                manifest = json.loads((out / "manifest.json").read_text())
                client_cost = client_per_tile(out / "shards")
        t = manifest["timings"]
        n = manifest["tiles"]["processed"]
        return {
            "tiles": n,
            "cells": manifest["cells"],
            "segment_s": t["segment"],
            "tiles_per_s": n / t["segment"],
            "work_ms": 1000 * (t["read"] + t["infer"] + t["post"]) / n,
            "client_ms": 1000 * client_cost,
            "dask": manifest.get("dask"),
            "timings": t,
        }

    return anyio.run(main)


def client_per_tile(shards: Path) -> float:
    """The client's own work per finished tile: count its cells and write its shard."""
    import numpy as np

    from wsitui.jobs.common.shards import ShardStore
    from wsitui.jobs.segment_cells.extract import CellRecords

    blobs = [p.read_bytes() for p in sorted(shards.glob("*.bin"))]
    with tempfile.TemporaryDirectory() as tmp:
        store = ShardStore(Path(tmp), {})
        began = time.perf_counter()
        for i, b in enumerate(blobs):
            store.put_bytes(f"t{i}", b)
            np.count_nonzero(CellRecords.from_bytes(b).status != 2)
        return (time.perf_counter() - began) / max(1, len(blobs))


def variant_local(slide: Path, model: str, workers: int) -> dict[str, Any]:
    out = run_job(slide, {"model": model})
    out["rss_mb"] = peak_rss_mb()
    return out


def variant_dask(slide: Path, model: str, workers: int) -> dict[str, Any]:
    import distributed

    from wsitui.jobs.segment_cells.backends.dask import local_size

    _, threads, _ = local_size()
    began = time.perf_counter()
    with (
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        cluster.get_client() as client,
    ):
        start_s = time.perf_counter() - began
        with distributed.get_task_stream(client) as ts:
            out = run_job(
                slide,
                {"model": model, "backend": "dask", "scheduler_address": cluster.scheduler_address},
            )
        out["cluster_start_s"] = start_s
        out["threads"] = threads
        out["tile_s"] = _tile_times(ts)
        out["round_trip_ms"] = 1000 * round_trip(client, 2 * threads * workers)
        rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        out["worker_rss_mb"] = sorted(rss.values())
    out["rss_mb"] = peak_rss_mb()
    return out


def variant_cli(slide: Path, model: str, workers: int, threads: int) -> dict[str, Any]:
    """The job on real `dask scheduler` / `dask worker` processes (not a LocalCluster)."""
    import socket

    import distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or repo}
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    py = sys.executable
    procs = [
        subprocess.Popen(
            [
                *(py, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"),
                *("--port", str(port), "--dashboard-address", ":0"),
            ],
            **quiet,
        )
    ]
    began = time.perf_counter()
    try:
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [
                        *(py, "-m", "distributed.cli.dask_worker", address),
                        *("--nthreads", str(threads), "--no-dashboard"),
                    ],
                    **quiet,
                )
            )
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
            start_s = time.perf_counter() - began
            with distributed.get_task_stream(client) as ts:
                out = run_job(
                    slide, {"model": model, "backend": "dask", "scheduler_address": address}
                )
            out["cluster_start_s"] = start_s
            out["threads"] = threads
            out["tile_s"] = _tile_times(ts)
            out["round_trip_ms"] = 1000 * round_trip(client, 2 * threads * workers)
            rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            out["worker_rss_mb"] = sorted(rss.values())
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    out["rss_mb"] = peak_rss_mb()
    return out


def _tile_times(ts: Any) -> list[float]:
    return [
        ss["stop"] - ss["start"]
        for rec in ts.data
        if "wsitui-cells" in str(rec.get("key", ""))
        for ss in rec.get("startstops", ())
        if ss.get("action") == "compute"
    ]


def _noop(i: int) -> int:
    return i


def round_trip(client: Any, window: int, n: int = 400) -> float:
    """Seconds per task of Dask itself: submit, schedule, run nothing, result back, with the
    backend's bounded as_completed window."""
    from distributed import as_completed

    began = time.perf_counter()
    it = iter(range(n))
    ac = as_completed(
        [client.submit(_noop, next(it), pure=False) for _ in range(window)], with_results=True
    )
    for _fut, _res in ac:
        i = next(it, None)
        if i is not None:
            ac.add(client.submit(_noop, i, pure=False))
    return (time.perf_counter() - began) / n


VARIANTS: dict[str, Any] = {
    "local": lambda slide, model: variant_local(slide, model, 0),
    "dask-1": lambda slide, model: variant_dask(slide, model, 1),
    "dask-2": lambda slide, model: variant_dask(slide, model, 2),
    "cli-1x2": lambda slide, model: variant_cli(slide, model, 1, 2),
    "cli-2x1": lambda slide, model: variant_cli(slide, model, 2, 1),
}


def run_variant(name: str, slide: Path, model: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--variant", name, "--slide", str(slide), "--model", model]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail}
    return json.loads(done.stdout.strip().splitlines()[-1])


def simulate(
    tile_s: list[float],
    *,
    workers: int,
    tiles: int,
    round_trip_s: float,
    client_s: float,
    jobs: int = JOBS_AT_ONCE,
    seed: int = 0,
) -> float:
    """Makespan (s) of `tiles` tiles on `workers` task slots (worker threads), per-tile times
    sampled from the measured ones; every result then passes Dask's round trip, one at a time
    (the measured no-op rate: scheduler and client are one pipe, a pessimistic bound), and one
    of `jobs` client threads (shard write, bookkeeping)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    durations = rng.choice(np.asarray(tile_s), size=tiles)
    free = [0.0] * workers
    done = np.empty(tiles)
    for i, d in enumerate(durations):
        t = heapq.heappop(free) + d
        done[i] = t
        heapq.heappush(free, t)
    done.sort()
    pipe = 0.0
    for i, t in enumerate(done):
        pipe = max(pipe, t) + round_trip_s
        done[i] = pipe
    clients = [0.0] * jobs
    end = 0.0
    for t in done:
        c = heapq.heappop(clients)
        finish = max(c, t) + client_s
        end = max(end, finish)
        heapq.heappush(clients, finish)
    return end


def _threads(r: dict[str, Any]) -> str:
    """Torch threads per worker as the manifest says ("-": not torch, or the local backend)."""
    by = (r.get("dask") or {}).get("torch_threads_by_worker") or {}
    return ",".join(str(v) for v in by.values()) or "-"


def fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="8192x6144")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--model", default="classical")
    p.add_argument("--cohort", type=int, default=100, help="slides in the simulated cohort")
    p.add_argument(
        "--cohort-tiles", type=int, default=1000, help="tissue tiles per simulated slide"
    )
    p.add_argument("--repeat", type=int, default=1, help="rounds; each variant keeps its best")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: all)")
    p.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--slide", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        print(json.dumps(VARIANTS[args.variant](args.slide, args.model)))
        return 0
    chosen = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown or "local" not in chosen:
        p.error(
            f"--variants: {', '.join(unknown) or 'local is missing'}; use {', '.join(VARIANTS)}"
        )

    w, h = (int(v) for v in args.size.lower().split("x"))
    slide = sample((w, h), args.seed)
    results: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeat):  # rounds interleave the variants; each keeps its best
        for name in chosen:
            r = run_variant(name, slide, args.model)
            best = results.get(name)
            if best is None or r.get("tiles_per_s", 0) > best.get("tiles_per_s", 0):
                results[name] = r
    base = results["local"]
    print(
        f"\nSEGMENT_CELLS, model {args.model}, slide {w}x{h} (seed {args.seed}), best of "
        f"{args.repeat}; load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(
        f"{'variant':8} {'tiles':>6} {'cells':>7} {'tiles/s':>8} {'x local':>8} "
        f"{'work ms/tile':>13} {'overhead ms/tile':>17} {'client RSS MB':>14} {'torch thr':>9}"
        "  workers' RSS MB"
    )
    for name, r in results.items():
        if "error" in r:
            print(f"{name:8} failed: {r['error']}")
            continue
        ratio = r["tiles_per_s"] / base["tiles_per_s"] if "tiles_per_s" in base else None
        overhead = None
        if name != "local" and "tiles_per_s" in base:
            # Extra wall time per tile on the same machine (its cores), against the local one.
            overhead = 1000 * (1 / r["tiles_per_s"] - 1 / base["tiles_per_s"])
        print(
            f"{name:8} {r['tiles']:>6} {r['cells']:>7} {fmt(r['tiles_per_s'], 2):>8} "
            f"{fmt(ratio, 2):>8} {fmt(r['work_ms']):>13} {fmt(overhead):>17} "
            f"{fmt(r['rss_mb']):>14} {_threads(r):>9}  "
            f"{', '.join(fmt(x) for x in r.get('worker_rss_mb', []))}"
        )
    ok = [r for r in results.values() if "cells" in r]
    print(f"\nsame cells in every variant: {len({r['cells'] for r in ok}) == 1}")
    one = next((results[n] for n in ("dask-1", "cli-1x2", "cli-2x1") if n in results), {})
    if "tile_s" not in one or not one["tile_s"]:
        return 0 if len(chosen) == 1 else 1
    print(
        f"dask-1: cluster start {one['cluster_start_s']:.1f} s; Dask round trip per task "
        f"{one['round_trip_ms']:.2f} ms; client work per tile {one['client_ms']:.2f} ms; "
        f"tile compute median {1000 * sorted(one['tile_s'])[len(one['tile_s']) // 2]:.0f} ms"
    )
    cap = 1000 / one["round_trip_ms"]
    print(
        f"Dask pipe (client + scheduler, measured here): at most ~{cap:.0f} tiles/s, so past "
        f"~{cap * sorted(one['tile_s'])[len(one['tile_s']) // 2] / one['threads']:.0f} workers "
        "like these more add nothing (a faster model, e.g. a GPU, reaches it sooner)"
    )
    per_slide = args.cohort_tiles
    total = args.cohort * per_slide
    print(
        f"\nsimulated cohort: {args.cohort} slides x {per_slide} tiles = {total:,} tiles, "
        f"{JOBS_AT_ONCE} jobs at once, workers like dask-1's ({one['threads']} threads each)"
    )
    print(f"{'workers':>8} {'makespan':>12} {'tiles/s':>9} {'x 1 worker':>11} {'efficiency':>11}")
    single = None
    for n in (1, 10, 100):
        span = simulate(
            one["tile_s"],
            workers=n * one["threads"],
            tiles=total,
            round_trip_s=one["round_trip_ms"] / 1000,
            client_s=one["client_ms"] / 1000,
        )
        single = single or span
        print(
            f"{n:>8} {span / 3600:>10.2f} h {total / span:>9.1f} {single / span:>11.1f} "
            f"{single / span / n:>11.0%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
