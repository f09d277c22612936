"""Admission benchmark: submissions per second the engine absorbs with limits off and on, the
cost of a refusal, and the dispatch decision p99 during a 10,000-submission flood, beside the
same measures without limits or without the flood, taken in the same run.

    .venv/bin/python benchmarks/bench_admission.py [--submissions 5000 --flood 10000]

A submission here is one single-job workflow (held, so submission cost is measured alone: one
SQLite commit and its events each). "Dispatch" is `Scheduler.next_starts`, timed on every call
while three tenants' jobs run on a zero-work executor.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import anyio

from wsitui.core.admission import Admission, Limits
from wsitui.core.engine import Engine, QueueFull, RateLimited
from wsitui.core.executor import Executor, JobContext
from wsitui.core.records import JobSpec, WorkflowSpec


class ZeroWork(Executor):
    job_type = "TISSUE_MASK"

    async def run(self, ctx: JobContext) -> None:
        ctx.report(1, 1)


def one(name: str, branch: str = "main") -> WorkflowSpec:
    return WorkflowSpec(
        name=name, jobs=(JobSpec(id="j", type="TISSUE_MASK", slide="s.svs", branch=branch),)
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def absorb(data: Path, n: int, limits: Limits | None) -> float:
    """Submissions per second, all admitted."""
    async with Engine(data, [ZeroWork()], limits=limits) as engine:
        t0 = time.perf_counter()
        for i in range(n):
            engine.submit("alice", one(f"w{i}"), start=False)
        return n / (time.perf_counter() - t0)


async def refusals(data: Path, n: int) -> float:
    """Refused submissions per second (a flood over its bucket)."""
    limits = Limits(rate=1.0, burst=1)
    async with Engine(data, [ZeroWork()], limits=limits) as engine:
        engine.submit("flood", one("first"), start=False)
        t0 = time.perf_counter()
        for i in range(n):
            with contextlib.suppress(RateLimited, QueueFull):
                engine.submit("flood", one(f"f{i}"), start=False)
        return n / (time.perf_counter() - t0)


async def dispatch_p99(data: Path, flood: int, *, flooding: bool) -> dict[str, float]:
    """Three tenants submit 300 running jobs; with `flooding`, a fourth submits `flood` times
    in between (rate limited). Returns decision p50/p99 and how many of the flood got in."""
    limits = Limits(rate=50.0, burst=100, max_queued_per_tenant=5_000, max_queued=10_000)
    decisions: list[float] = []
    engine = Engine(data, [ZeroWork()], limits=limits, max_workers=4, max_active_users=3)
    inner = engine.scheduler.next_starts

    def timed() -> list[str]:
        t0 = time.perf_counter()
        out = inner()
        decisions.append(time.perf_counter() - t0)
        return out

    engine.scheduler.next_starts = timed  # type: ignore[method-assign]
    admitted_flood = 0
    async with engine:
        for i in range(300):
            engine.submit(f"t{i % 3}", one(f"w{i}", branch=f"b{i % 7}"), start=True)
            if flooding:
                for k in range(flood // 300):
                    try:
                        engine.submit("flood", one(f"f{i}-{k}"), start=False)
                        admitted_flood += 1
                    except (RateLimited, QueueFull):
                        pass
            await anyio.sleep(0)  # let jobs run between bursts
        await engine.wait_idle()
    return {
        "p50_ms": percentile(decisions, 0.5) * 1000,
        "p99_ms": percentile(decisions, 0.99) * 1000,
        "decisions": len(decisions),
        "flood_admitted": admitted_flood,
    }


def bucket_check_ns(n: int) -> float:
    adm = Admission(Limits(rate=1e9, burst=10**9), clock=time.perf_counter)
    t0 = time.perf_counter()
    for i in range(n):
        adm.admit(f"t{i % 100}", 1, 0, 0)
    return (time.perf_counter() - t0) / n * 1e9


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        off = await absorb(root / "off", args.submissions, None)
        on = await absorb(
            root / "on",
            args.submissions,
            Limits(rate=1e9, burst=10**9, max_queued_per_tenant=10**9, max_queued=10**9),
        )
        refused = await refusals(root / "refused", args.flood)
        calm = await dispatch_p99(root / "calm", args.flood, flooding=False)
        flood = await dispatch_p99(root / "flood", args.flood, flooding=True)
    print(f"submissions absorbed, limits off : {off:10,.0f} /s  (baseline)")
    print(f"submissions absorbed, limits on  : {on:10,.0f} /s  ({on / off:.2f}x of baseline)")
    print(
        f"refused submissions (flood)      : {refused:10,.0f} /s  ({refused / off:.0f}x baseline)"
    )
    print(f"admission check alone            : {bucket_check_ns(200_000):10,.0f} ns")
    print(
        f"dispatch p50 / p99, no flood     : {calm['p50_ms']:.3f} / {calm['p99_ms']:.3f} ms "
        f"({calm['decisions']:.0f} decisions)  (baseline)"
    )
    ratio = flood["p99_ms"] / calm["p99_ms"] if calm["p99_ms"] else float("nan")
    print(
        f"dispatch p50 / p99, {args.flood:,} flood : {flood['p50_ms']:.3f} / "
        f"{flood['p99_ms']:.3f} ms ({flood['decisions']:.0f} decisions, {ratio:.2f}x baseline p99;"
        f" {flood['flood_admitted']:.0f} of the flood admitted)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submissions", type=int, default=5_000)
    p.add_argument("--flood", type=int, default=10_000)
    anyio.run(main_async, p.parse_args())


if __name__ == "__main__":
    main()
