"""A cohort through the whole engine: overhead per slide, memory as the cohort grows, Dask.

    .venv/bin/python benchmarks/bench_cohort.py [--sizes 50,100,200] [--workers 2]
        [--overhead 200] [--dask 200] [--slide 1024x768] [--gpu-tile-s S]

Each run is its own process (its peak RSS is its own), on generated slides (8 seeds, hard
links up to N; each link is its own slide to the cohort), TISSUE_MASK then SEGMENT_CELLS with
the classical model, through `prepare_session` and `Session.open` as `wsitui run` does:

    overhead-N  N slides on 1 worker: engine overhead per slide = (wall − Σ jobs' own run
                time) / N, where a job's run time is its record's finished − started (the
                executor's whole run: slide open, model, tiles, writing). What is left is the
                engine's: scheduling, SQLite commits, events, the cohort summary written as
                each slide ends. Also the time to expand and check the cohort before it runs.
    rss-N       N slides on `--workers` workers, for each N of --sizes: wall, slides/min and
                the peak RSS of the process (flat = the engine keeps no per-slide state that
                grows beyond its job records).
    dask-N      the same cohort with `[dask] backend = "dask"` (a local cluster of 1 worker
                process for the session): wall, slides/min, client peak RSS.

Then the scale on paper: 5,000 slides of 40,000 x 30,000 px, from the per-tile segmenting time
measured here (the classical model on this machine's CPU) and, if given, a GPU per-tile time
(`--gpu-tile-s`, e.g. from benchmarks/gpu/check.sh); this script measures no GPU.

1,024 x 768 is below the sample generator's 1,024 px minimum side for users; the benchmark
lowers it for its own slides only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, ROOT, peak_rss_mb

# `--code DIR`: the child runs wsitui from another checkout (e.g. the code before a change, made
# with `git archive`), on the same cached slides: before/after runs alternated in one command.
CODE_ENV = "WSITUI_BENCH_CODE"
if os.environ.get(CODE_ENV):
    sys.path.insert(0, os.environ[CODE_ENV])

SEEDS = 8


def slides(n: int, size: tuple[int, int]) -> Path:
    """A folder of n slides: hard links to SEEDS generated ones (made once into the cache)."""
    import wsitui.slides.sample as sample
    import wsitui.slides.synthetic.generator as generator

    base = CACHE / f"cohort_{size[0]}x{size[1]}"
    base.mkdir(parents=True, exist_ok=True)
    # this benchmark's small slides only (the check reads the generator module's constant)
    generator.MIN_SIDE = min(generator.MIN_SIDE, *size)
    for seed in range(SEEDS):
        path = base / f"seed{seed}.svs"
        if not path.exists():
            print(f"generating {path.name} (once) ...", file=sys.stderr)
            sample.write_sample_slide(path, size=size, seed=seed)
    folder = base / f"n{n}"
    folder.mkdir(exist_ok=True)
    for i in range(n):
        link = folder / f"slide{i:05d}.svs"
        if not link.exists():
            os.link(base / f"seed{i % SEEDS}.svs", link)
    return folder


def config(tmp: Path, folder: Path, workers: int, backend: str, model: str = "classical") -> Path:
    dask = '[dask]\nbackend = "dask"\n' if backend == "dask" else ""
    path = tmp / "cohort.toml"
    path.write_text(
        f"[scheduler]\nmax_workers = {workers}\n{dask}"
        f'[paths]\ndata_dir = "{tmp / "data"}"\n'
        f'[[workflows]]\ntenant = "lab"\nname = "bench"\nslides = ["{folder}/*.svs"]\n'
        '  [[workflows.jobs]]\n  id = "mask"\n  type = "TISSUE_MASK"\n'
        '  [[workflows.jobs]]\n  id = "cells"\n  type = "SEGMENT_CELLS"\n'
        '  depends_on = ["mask"]\n  params = { model = "' + model + '", device = "cpu" }\n'
    )
    return path


def _now() -> dict[str, float]:
    """This process now: resident MB, OS threads, open file descriptors (Linux /proc)."""
    rss = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return {
        "rss_mb": round(rss, 1),
        "threads": sum(1 for _ in Path("/proc/self/task").iterdir()),
        "fds": sum(1 for _ in Path("/proc/self/fd").iterdir()),
    }


def child(
    n: int, workers: int, backend: str, size: tuple[int, int], model: str = "classical"
) -> dict[str, Any]:
    """One cohort run in this process; its figures as a dict."""
    import anyio

    from wsitui.session.session import SessionOptions, prepare_session

    folder = slides(n, size)
    rss_before = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="bench_cohort_") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        session = prepare_session(
            SessionOptions(config=config(tmp, folder, workers, backend, model))
        )
        prepare_s = time.perf_counter() - t0
        walls: dict[str, float] = {}
        quarters: list[dict[str, float]] = []  # the process as each quarter of the slides ends

        async def go() -> None:
            t = time.perf_counter()  # the engine opening and the cohort submitted count too
            async with session.open(start=True):
                while True:
                    with anyio.move_on_after(0.5):
                        await session.engine.wait_idle()
                        break
                    (_, wf), *_ = session.runs
                    done = sum(j.state.terminal for j in session.engine.workflow("lab", wf).jobs)
                    if done >= (len(quarters) + 1) * 2 * n / 4:  # two jobs a slide
                        quarters.append({"slides": done // 2, **_now()})
                walls["run"] = time.perf_counter() - t
            quarters.append({"slides": n, **_now()})

        try:
            anyio.run(go)
        finally:
            session.close()
        (_, wf_id), *_ = session.runs
        jobs = session.engine.workflow("lab", wf_id).jobs
        own = sum(j.finished_at - j.started_at for j in jobs if j.started_at and j.finished_at)
        ran = [j for j in jobs if j.started_at and j.finished_at]
        spans = sorted((j.started_at, j.finished_at) for j in ran)
        # one worker: the engine's time between one job's end and the next one's start
        gaps = sum(max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(spans))
        by_type: dict[str, float] = {}
        for j in jobs:
            if j.started_at and j.finished_at:
                by_type[str(j.job_type)] = (
                    by_type.get(str(j.job_type), 0.0) + j.finished_at - j.started_at
                )
        segment = tiles = 0.0
        cells = 0
        load_model: list[float] = []  # each cells job's model step, in start order
        results = session.engine.results_root
        for j in sorted(jobs, key=lambda j: j.started_at or 0.0):
            if str(j.job_type) == "SEGMENT_CELLS":
                m = json.loads((session.engine.results_dir(j) / "manifest.json").read_text())
                segment += m["timings"]["segment"]
                tiles += m["tiles"]["processed"]
                cells += m["cells"]
                load_model.append(m["timings"].get("load_model", 0.0))
        summary = (results / "lab" / wf_id / "cohort" / "summary.csv").read_text().splitlines()
        states = [j.state for j in jobs]
    return {
        "n": n,
        "workers": workers,
        "backend": backend,
        "prepare_s": round(prepare_s, 3),
        "wall_s": round(walls["run"], 3),
        "jobs_own_s": round(own, 3),
        "by_type_s": {k: round(v, 3) for k, v in by_type.items()},
        "overhead_per_slide_ms": round(1000 * (walls["run"] * workers - own) / n, 1),
        "gaps_per_slide_ms": round(1000 * gaps / n, 1),
        "slides_per_min": round(60 * n / walls["run"], 2),
        "segment_s_per_tile": round(segment / tiles, 4) if tiles else None,
        "cpu_s": round(cpu_seconds(), 2),  # the process, all threads: imports and model too
        "cells": cells,
        "load_model_first_s": round(load_model[0], 3) if load_model else None,
        "load_model_rest_s": round(sum(load_model[1:]), 3),
        "tiles_per_slide": tiles / n,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_mb": round(rss_before, 1),
        "quarters": quarters,  # RSS, threads, fds as the cohort went: flat = nothing kept
        "summary_rows": len(summary) - 1,
        "all_succeeded": all(str(s) == "SUCCEEDED" for s in states),
        "code": str(Path(sys.modules["wsitui"].__file__ or "").resolve().parents[1]),
    }


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run_child(
    n: int,
    workers: int,
    backend: str,
    slide: str,
    model: str = "classical",
    code: Path | None = None,
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(n), "--workers", str(workers)]
    cmd += ["--backend", backend, "--slide", slide, "--model", model]
    env = {**os.environ, CODE_ENV: str(code)} if code else None
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False, env=env)
    if out.returncode != 0:
        raise SystemExit(f"child {n}/{backend} failed:\n{out.stderr[-3000:]}")
    line = out.stdout.strip().splitlines()[-1]
    print(line, file=sys.stderr, flush=True)  # each run's figures as soon as it ends
    return json.loads(line)


def on_paper(per_tile_s: float, overhead_ms: float, gpu_tile_s: float | None) -> list[str]:
    """5,000 slides of 40,000 x 30,000 px at 0.5 µm/px: tiles, then hours on W workers."""
    core = 576  # the classical model's core tile at scale 1 (its manifest's tiles.tile_size)
    tiles = (40_000 // core + 1) * (30_000 // core + 1)
    tissue = 0.5  # half of a slide is tissue: a typical resection; a biopsy is far less
    per_slide = tiles * tissue
    lines = [
        f"scale on paper: 5,000 slides of 40,000 x 30,000 px, {tiles:,} tiles of {core} px a "
        f"slide, {per_slide:,.0f} with tissue (assumed {tissue:.0%})",
        f"  engine overhead: 5,000 x {overhead_ms:.0f} ms = {5000 * overhead_ms / 3.6e6:.2f} h "
        "of one core in total (measured per slide above), spread over the run",
    ]
    for name, t in (("CPU classical (measured here)", per_tile_s), ("GPU (given)", gpu_tile_s)):
        if t is None:
            lines.append(f"  {name}: not measured here; pass --gpu-tile-s from a GPU check")
            continue
        total_h = 5000 * per_slide * t / 3600
        lines.append(
            f"  {name}: {t:.3f} s/tile -> {total_h:,.0f} worker-hours; "
            f"1 worker {total_h / 24:,.1f} days, 10 workers {total_h / 10:,.1f} h "
            "(slides run side by side, one per worker: no stragglers to speak of at 500 a worker)"
        )
    return lines


def cohort_rounds(args: argparse.Namespace) -> None:
    """`--cohort N`: N slides on `--workers` workers with `--model`, `--rounds` times, each
    round this checkout's code and then (with `--code`) the other's, in their own processes."""
    codes: list[Path | None] = [None] + ([args.code] if args.code else [])
    rows = []
    for r in range(args.rounds):
        for code in codes:
            load = os.getloadavg()[0]
            res = run_child(args.cohort, args.workers, "local", args.slide, args.model, code)
            rows.append((r, "other" if code else "this", load, res))
    print(
        f"cohort of {args.cohort} slides of {args.slide}, {args.workers} workers, model "
        f"{args.model}, CPU ({time.strftime('%Y-%m-%d %H:%M')})"
    )
    print(
        f"{'round':>5} {'code':<5} {'load':>5} {'wall s':>7} {'slides/min':>10} {'CPU s':>7} "
        f"{'model 1st s':>11} {'model rest s':>12} {'cells':>7} {'peak RSS MB':>11} {'ok':>3}"
    )
    for r, which, load, res in rows:
        ok = "yes" if res["all_succeeded"] and res["summary_rows"] == res["n"] else "NO"
        print(
            f"{r:>5} {which:<5} {load:>5.1f} {res['wall_s']:>7.1f} {res['slides_per_min']:>10.1f} "
            f"{res['cpu_s']:>7.1f} {res['load_model_first_s'] or 0:>11.2f} "
            f"{res['load_model_rest_s']:>12.2f} {res['cells']:>7} {res['peak_rss_mb']:>11.0f} "
            f"{ok:>3}"
        )
        went = ", ".join(f"{q['slides']:.0f}: {q['rss_mb']:.0f} MB" for q in res["quarters"])
        print(f"      RSS as the slides ended: {went}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,100,200")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--overhead", type=int, default=200, help="slides of the 1-worker run")
    ap.add_argument("--dask", type=int, default=200, help="slides of the Dask run (0: none)")
    ap.add_argument("--slide", default="1024x768")
    ap.add_argument("--gpu-tile-s", type=float, default=None)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--backend", default="local", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="classical", help="the cells jobs' model (e.g. shipped)")
    ap.add_argument("--cohort", type=int, default=0, help="only N slides on --workers workers")
    ap.add_argument("--rounds", type=int, default=1, help="--cohort runs (alternated with --code)")
    ap.add_argument("--code", type=Path, default=None, help="--cohort: also this checkout's code")
    args = ap.parse_args()
    w, h = (int(v) for v in args.slide.lower().split("x"))
    if args.child:
        print(json.dumps(child(args.child, args.workers, args.backend, (w, h), args.model)))
        return
    slides(1, (w, h))  # generate the seeds once, outside the measured processes
    if args.cohort:
        cohort_rounds(args)
        return
    rows = []
    first = run_child(args.overhead, 1, "local", args.slide)
    rows.append(("overhead", first))
    for n in (int(v) for v in args.sizes.split(",")):
        rows.append(("rss", run_child(n, args.workers, "local", args.slide)))
    if args.dask:
        rows.append(("dask", run_child(args.dask, args.workers, "dask", args.slide)))
    print(f"cohort of {args.slide} slides, TISSUE_MASK + SEGMENT_CELLS (classical), CPU")
    print(
        f"{'run':<9} {'slides':>6} {'workers':>7} {'prep s':>7} {'wall s':>8} {'slides/min':>10} "
        f"{'overhead ms/slide':>17} {'gaps ms/slide':>13} {'peak RSS MB':>11} {'ok':>3}"
    )
    for kind, r in rows:
        ok = "yes" if r["all_succeeded"] and r["summary_rows"] == r["n"] else "NO"
        overhead = f"{r['overhead_per_slide_ms']:.1f}" if kind == "overhead" else "-"
        print(
            f"{kind + '-' + r['backend'][:1]:<9} {r['n']:>6} {r['workers']:>7} "
            f"{r['prepare_s']:>7.2f} {r['wall_s']:>8.1f} {r['slides_per_min']:>10.1f} "
            f"{overhead:>17} {r['gaps_per_slide_ms'] if kind == 'overhead' else '-':>13} "
            f"{r['peak_rss_mb']:>11.0f} {ok:>3}"
        )
    for kind, r in rows:
        went = ", ".join(
            f"{q['slides']:.0f}: {q['rss_mb']:.0f} MB {q['threads']:.0f} thr {q['fds']:.0f} fd"
            for q in r["quarters"]
        )
        print(f"{kind}-{r['backend'][:1]} {r['n']} slides, RSS as the slides ended: {went}")
    print(
        f"jobs' own time in the overhead run: {first['by_type_s']}; "
        f"segmenting {first['segment_s_per_tile']} s/tile, {first['tiles_per_slide']:.0f} "
        "tiles a slide"
    )
    for line in on_paper(
        first["segment_s_per_tile"], first["overhead_per_slide_ms"], args.gpu_tile_s
    ):
        print(line)


if __name__ == "__main__":
    main()
