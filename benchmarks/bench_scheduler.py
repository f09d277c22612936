"""Scheduler benchmark: 10,000 jobs, 100 tenants, 1,000 lanes, a zero-work executor.

Measures the engine end to end (SQLite commits, events, asyncio tasks) and the dispatch decision
(`Scheduler.next_starts`) alone, beside a baseline measured in the same run: the full-scan
dispatch most public implementations use (scan every pending job on each decision).

    .venv/bin/python benchmarks/bench_scheduler.py [--jobs 10000 --tenants 100 --lanes 1000]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from wsitui.core.engine import Engine
from wsitui.core.executor import Executor, JobContext
from wsitui.core.records import JobSpec, WorkflowSpec


class ZeroWork(Executor):
    """No work at all: what is measured is the engine (the base class gives the defaults)."""

    job_type = "TISSUE_MASK"

    async def run(self, ctx: JobContext) -> None:
        ctx.report(1, 1)


def workload(jobs: int, tenants: int, lanes: int) -> list[tuple[str, WorkflowSpec]]:
    """Each tenant gets one workflow with lanes/tenants branches of jobs/lanes jobs each."""
    per_tenant_lanes = lanes // tenants
    per_lane = jobs // lanes
    out = []
    for t in range(tenants):
        specs = tuple(
            JobSpec(id=f"b{b}-j{j}", type="TISSUE_MASK", slide="s.svs", branch=f"b{b}")
            for b in range(per_tenant_lanes)
            for j in range(per_lane)
        )
        out.append((f"tenant{t:03d}", WorkflowSpec(name="bench", jobs=specs)))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_engine(args: argparse.Namespace, data: Path) -> dict[str, float]:
    decisions: list[float] = []
    engine = Engine(data, [ZeroWork()])
    inner = engine.scheduler.next_starts

    def timed() -> list[str]:
        t0 = time.perf_counter()
        out = inner()
        decisions.append(time.perf_counter() - t0)
        return out

    engine.scheduler.next_starts = timed  # type: ignore[method-assign]
    t0 = time.perf_counter()
    async with engine:
        for tenant, spec in workload(args.jobs, args.tenants, args.lanes):
            engine.submit(tenant, spec)
        await engine.wait_idle()
    elapsed = time.perf_counter() - t0
    return {
        "elapsed": elapsed,
        "jobs_per_s": args.jobs / elapsed,
        "p50_ms": statistics.median(decisions) * 1e3,
        "p99_ms": percentile(decisions, 0.99) * 1e3,
        "decisions": len(decisions),
    }


def baseline_full_scan(args: argparse.Namespace) -> dict[str, float]:
    """Same rules, decided by scanning every pending job per decision (the common approach)."""
    jobs = []
    for tenant, spec in workload(args.jobs, args.tenants, args.lanes):
        for seq, j in enumerate(spec.jobs):
            jobs.append({"tenant": tenant, "lane": (tenant, j.branch), "seq": seq, "state": "P"})
    running: list[dict] = []
    active: list[str] = []
    decisions: list[float] = []
    done = 0
    while done < len(jobs):
        t0 = time.perf_counter()
        busy = {j["lane"] for j in running}
        live = {j["tenant"] for j in jobs if j["state"] in "PR"}
        active = [t for t in active if t in live]
        for j in jobs:
            if len(running) >= 4:
                break
            if j["state"] != "P" or j["lane"] in busy:
                continue
            if j["tenant"] not in active:
                if len(active) >= 3:
                    continue
                active.append(j["tenant"])
            j["state"] = "R"
            busy.add(j["lane"])
            running.append(j)
        decisions.append(time.perf_counter() - t0)
        finished = running.pop(0)
        finished["state"] = "S"
        done += 1
    return {
        "p50_ms": statistics.median(decisions) * 1e3,
        "p99_ms": percentile(decisions, 0.99) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--lanes", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours = anyio.run(run_engine, args, Path(tmp))
    base = baseline_full_scan(args)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"workload: {args.jobs} jobs, {args.tenants} tenants, {args.lanes} lanes, 4 workers")
    print(f"{'':28}{'wsitui':>12}{'full scan':>12}{'ratio':>10}")
    for key, label in (
        ("p50_ms", "dispatch decision p50 (ms)"),
        ("p99_ms", "dispatch decision p99 (ms)"),
    ):
        print(f"{label:28}{ours[key]:12.4f}{base[key]:12.4f}{base[key] / ours[key]:9.1f}x")
    print(f"{'decisions':28}{ours['decisions']:12.0f}")
    print(f"{'end to end (s)':28}{ours['elapsed']:12.2f}")
    print(f"{'jobs per second':28}{ours['jobs_per_s']:12.0f}")
    print(f"{'process peak RSS (MB)':28}{rss:12.1f}")
    ok = ours["p99_ms"] < 1.0 and rss < 200
    print(f"goal p99 < 1 ms and < 200 MB: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
