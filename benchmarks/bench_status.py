"""Time `wsitui status` on a data dir of many jobs (default 3,000: 30 workflows x 100 jobs over
5 tenants, a share of them run to SUCCEEDED or FAILED, the rest held).

    .venv/bin/python benchmarks/bench_status.py [--workflows 30 --jobs 100 --ran 0.2 --runs 5]
    .venv/bin/python benchmarks/bench_status.py --lane 3000

`--lane N` builds instead ONE started workflow of N jobs on one branch, the first running when
the engine stopped and the rest queued behind it: the case where every job's "behind X in its
lane" is derived against one long lane (it was O(lane^2)).

Prints, per mode (table, --json, --verbose), the median wall time and the CPU time (user +
system) of the whole command, interpreter start included. CPU time is the figure to trust on
a loaded machine. Not a CI test (tests/headless/test_status_cost.py checks what it imports).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.tui.fakes import ScriptedExecutor  # noqa: E402
from wsitui.core.engine import Engine  # noqa: E402
from wsitui.core.executor import JobContext, JobError  # noqa: E402
from wsitui.core.records import JobSpec, WorkflowSpec  # noqa: E402


class Instant(ScriptedExecutor):
    """Ends at once: every tenth job fails, the rest succeed with 4 tiles."""

    async def run(self, ctx: JobContext) -> None:
        ctx.report(4, 4, {"cells": 10})
        if ctx.job.key.endswith("9"):
            raise JobError("synthetic failure for the benchmark")


async def build(data_dir: Path, workflows: int, jobs: int, ran: float) -> None:
    async with Engine(data_dir, [Instant()], max_workers=4, max_active_users=5) as engine:
        for w in range(workflows):
            specs = tuple(
                JobSpec(
                    id=f"j{i:03d}", type="TISSUE_MASK", slide="/bench/s.svs", branch=f"b{i % 8}"
                )
                for i in range(jobs)
            )
            start = w < round(workflows * ran)
            engine.submit(f"t{w % 5}", WorkflowSpec(name=f"wf{w}", jobs=specs), start=start)
        with anyio.fail_after(3600):
            await engine.wait_until(engine.is_idle)


class Hang(ScriptedExecutor):
    """Never ends on its own: the engine's stop interrupts it."""


async def build_lane(data_dir: Path, jobs: int) -> None:
    async with Engine(data_dir, [Hang()], max_workers=1) as engine:
        specs = tuple(
            JobSpec(id=f"j{i:04d}", type="TISSUE_MASK", slide="/bench/s.svs", branch="lane")
            for i in range(jobs)
        )
        engine.submit("t0", WorkflowSpec(name="one-lane", jobs=specs), start=True)
        with anyio.fail_after(600):
            await engine.wait_until(lambda: engine.stats().running == 1)


def time_status(data_dir: Path, extra: list[str], runs: int) -> tuple[float, float]:
    walls, cpus = [], []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "wsitui", "status", "--data-dir", str(data_dir), *extra],
            stdout=subprocess.DEVNULL,
            check=True,
            env=env,
            cwd=REPO,  # `-m` imports from the working directory first
        )
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workflows", type=int, default=30)
    p.add_argument("--jobs", type=int, default=100, help="jobs per workflow")
    p.add_argument("--ran", type=float, default=0.2, help="share of workflows run to the end")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--lane", type=int, default=0, help="N jobs queued in one lane instead")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        t0 = time.perf_counter()
        if args.lane:
            anyio.run(build_lane, data_dir, args.lane)
            total = args.lane
        else:
            anyio.run(build, data_dir, args.workflows, args.jobs, args.ran)
            total = args.workflows * args.jobs
        print(f"{total:,} jobs built in {time.perf_counter() - t0:.1f} s; "
              f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        for name, extra in (("table", []), ("--json", ["--json"]), ("--verbose", ["--verbose"])):
            wall, cpu = time_status(data_dir, extra, args.runs)
            print(
                f"wsitui status {name:<10} wall {wall:.2f} s  cpu {cpu:.2f} s "
                f"(median of {args.runs})"
            )
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
