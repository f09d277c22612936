"""A random multi-tenant run through the real engine, for the rule oracle: held jobs and starts,
cancels (some ignored by the executor), failures, executors raising SystemExit, retries, clean
restarts and a crash (a copy of the committed state with the event log cut at the same point).

Used small by a test and large by `benchmarks/stress_engine.py`. The executor fakes the work
(sleeps per tile in its thread pool): the engine is what is under test.
"""

from __future__ import annotations

import random
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from tests.core.crash import snapshot
from tests.core.fakes import LooseParams
from tests.core.oracle import Oracle, check, missing_from_log, read_events
from wsitui.core.engine import Engine
from wsitui.core.eventlog import JsonlEventLog
from wsitui.core.executor import Executor, JobContext, JobError
from wsitui.core.records import JobSpec, JobState, WorkflowSpec


class ChaosExecutor(Executor):
    job_type = "TISSUE_MASK"
    params_model = LooseParams
    threads = 4

    def __init__(self, tile_seconds: float) -> None:
        self.tile_seconds = tile_seconds

    async def run(self, ctx: JobContext) -> None:
        fate = ctx.job.params.get("fate")  # set: a job whose outcome the run relies on
        if not isinstance(fate, int):
            fate = zlib.crc32(f"{ctx.job.id}/{ctx.job.attempt}".encode()) % 100
        if fate == 0:
            raise SystemExit("chaos: an executor bug that exits")
        await ctx.to_thread(self._work, ctx, fate)

    def _work(self, ctx: JobContext, fate: int) -> None:
        tiles = 1 + fate % 5
        saved = ctx.checkpoint.load()
        start = saved["next"] if saved else 0
        for tile in range(start, tiles):
            if fate != 1:  # fate 1 ignores cancel: the engine's deadline must end it
                ctx.check_cancel()
            time.sleep(self.tile_seconds)
            ctx.checkpoint.save({"next": tile + 1}, tile + 1)
            ctx.report(tile + 1, tiles)
        if fate in (2, 3, 4, 5, 6):
            raise JobError("chaos: synthetic failure")


@dataclass
class ChaosResult:
    oracle: Oracle
    jobs: int
    seconds: float
    restarts: int
    crashes: int
    states: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # transitions committed but not logged


def _workflow(rng: random.Random, n: int, size: int) -> WorkflowSpec:
    specs = []
    for i in range(size):
        picks = rng.sample(range(i), k=min(i, rng.choice([0, 0, 1, 2])))
        specs.append(
            JobSpec(
                id=f"j{i}",
                type="TISSUE_MASK",
                slide="s.svs",
                branch=f"b{rng.randrange(3)}",
                depends_on=tuple(f"j{p}" for p in picks),
            )
        )
    return WorkflowSpec(name=f"w{n}", jobs=tuple(specs))


async def chaos_run(
    root: Path,
    *,
    tenants: int,
    jobs: int,
    seed: int,
    restarts: int = 2,
    crash: bool = True,
    max_workers: int = 4,
    max_active_users: int = 3,
    tile_seconds: float = 0.002,
) -> ChaosResult:
    rng = random.Random(seed)
    log_path = root / "events.jsonl"
    data = root / "data0"
    names = [f"t{i}" for i in range(tenants)]
    submitted = 0
    n_wf = 0
    segments = restarts + (1 if crash else 0) + 1
    per_segment = -(-jobs // segments)
    began = time.monotonic()
    kw = {"max_workers": max_workers, "max_active_users": max_active_users, "cancel_grace": 0.2}
    for segment in range(segments):
        ex = ChaosExecutor(tile_seconds)
        log = JsonlEventLog(log_path)
        crashed: Path | None = None
        engine = Engine(data, [ex], **kw)
        engine.bus.add_listener(log)
        async with engine:
            goal = min(jobs, submitted + per_segment)
            while submitted < goal:
                op = rng.random()
                all_jobs = list(engine._jobs.values())
                if op < 0.5:
                    n_wf += 1
                    size = min(goal - submitted, rng.randint(1, 8))
                    tenant = rng.choice(names)
                    engine.submit(tenant, _workflow(rng, n_wf, size), start=rng.random() < 0.85)
                    submitted += size
                elif op < 0.6:
                    held = [j for j in all_jobs if j.state is JobState.PENDING and not j.enqueued]
                    if held:
                        job = rng.choice(held)
                        engine.start(job.tenant, [job.id])
                elif op < 0.7:
                    live = [j for j in all_jobs if j.state in (JobState.PENDING, JobState.RUNNING)]
                    if live:
                        job = rng.choice(live)
                        engine.cancel(job.tenant, job.id)
                elif op < 0.8:
                    bad = [j for j in all_jobs if j.state in (JobState.FAILED, JobState.CANCELED)]
                    if bad:
                        job = rng.choice(bad)
                        engine.retry(job.tenant, job.id)
                await anyio.sleep(rng.random() * 0.01)
            if segment == segments - 1:  # the end: start what is held, retry failures once
                for tenant in engine.tenants():
                    for status in engine.workflows(tenant):
                        engine.start_workflow(tenant, status.workflow.id)
                # Whatever the timing did to the random jobs, one job surely fails and one
                # surely succeeds (nothing cancels them): the run's outcome is deterministic.
                sure = (("fails", 2), ("succeeds", 10))
                specs = [
                    JobSpec(id=k, type="TISSUE_MASK", slide="s", params={"fate": f})
                    for k, f in sure
                ]
                engine.submit(names[0], WorkflowSpec(name="sure", jobs=tuple(specs)))
                with anyio.fail_after(600):
                    await engine.wait_idle()
            elif crash and segment == segments - 2:
                await anyio.sleep(0.05)
                engine.bus.remove_listener(log)  # the process dies: nothing more is logged
                log.close()
                crashed = snapshot(engine, root / f"crash{segment}")
        if crashed is not None:
            data = crashed
        else:
            log.close()
    states: dict[str, int] = {}
    async with Engine(data, [ChaosExecutor(tile_seconds)], **kw) as engine:
        for job in engine._jobs.values():
            states[str(job.state)] = states.get(str(job.state), 0) + 1
    oracle = check(
        read_events([log_path]), max_workers=max_workers, max_active_users=max_active_users
    )
    missing = missing_from_log(read_events([log_path]), data / "state.db")
    return ChaosResult(
        oracle=oracle,
        jobs=submitted,
        seconds=time.monotonic() - began,
        restarts=restarts,
        crashes=int(crash),
        states=states,
        missing=missing,
    )
