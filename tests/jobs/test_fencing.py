"""A discarded run's late output never lands in its retry (the spine issue, item 3).

Through the real engine: a job's thread blocks past `cancel_grace` (threads cannot be killed),
the engine abandons it (CANCELED) and the job is retried at once; attempt 2 runs in the same
results dir. When the abandoned thread wakes and writes its outputs and shards through the jobs
layer's helpers, nothing of it may reach attempt 2's dir. The executor is a test double on
purpose: the blocking must be under the test's control; the writes go through the same helpers
every job type uses (`common/files.py`, `common/shards.py`).
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from wsitui.core.engine import Engine
from wsitui.core.executor import Executor, JobContext
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.jobs.common.files import Fenced, commit_fence, write_atomic
from wsitui.jobs.common.shards import ShardOwner, ShardStore

pytestmark = pytest.mark.anyio


class Sleepwalker(Executor):
    """Attempt 1 blocks (ignoring cancel) until released, then writes; attempt 2 is quick."""

    job_type = "TISSUE_MASK"

    def __init__(self) -> None:
        self.release_first = threading.Event()
        self.first_done = threading.Event()
        self.first_outcome: list[str] = []
        self.release_second = threading.Event()

    async def run(self, ctx: JobContext) -> None:
        await ctx.to_thread(self._work, ctx)

    def _work(self, ctx: JobContext) -> None:
        with commit_fence(ctx.cancel_requested):
            shards = ShardStore(
                ctx.shards_dir,
                {"slide": ctx.job.slide},
                owner=ShardOwner(ctx.job.id, ctx.job.attempt),
                fence=ctx.cancel_requested,
            )
            if ctx.job.attempt == 1:
                shards.put_bytes("t0_0", b"attempt 1, before the block")
                try:
                    self.release_first.wait(30)  # deaf to cancel, past the grace
                    write_atomic(ctx.results_dir / "cells.csv", b"late, from attempt 1")
                    shards.put_bytes("t1_0", b"late, from attempt 1")
                    self.first_outcome.append("written")
                except Fenced:
                    self.first_outcome.append("fenced")
                finally:
                    self.first_done.set()
                return
            shards.put_bytes("t5_0", b"attempt 2")
            self.release_second.wait(30)
            write_atomic(ctx.results_dir / "attempt.txt", b"2")


async def poll(predicate) -> None:  # type: ignore[no-untyped-def]
    """For facts no engine event announces (a file appearing)."""
    while not predicate():
        await anyio.sleep(0.01)


async def test_an_abandoned_runs_late_writes_do_not_reach_its_retry(tmp_path: Path):
    ex = Sleepwalker()
    spec = WorkflowSpec(name="w", jobs=(JobSpec(id="x", type="TISSUE_MASK", slide="s.svs"),))
    async with Engine(tmp_path / "d", [ex], max_workers=1, cancel_grace=0.3) as engine:
        x = engine.submit("t", spec).jobs[0]
        out = engine.results_dir(x)
        with anyio.fail_after(20):
            await poll(lambda: (out / "shards" / "t0_0.bin").exists())
            engine.cancel("t", x.id)
            await engine.wait_until(lambda: engine._jobs[x.id].state is JobState.CANCELED)
            engine.retry("t", x.id)  # at once: attempt 1's thread is still blocked
            await poll(lambda: (out / "shards" / "t5_0.bin").exists())
        ex.release_first.set()  # the abandoned thread wakes and writes into... attempt 2's dir?
        assert await anyio.to_thread.run_sync(ex.first_done.wait, 20)
        ex.release_second.set()
        with anyio.fail_after(20):
            await engine.wait_idle()
        job = engine._jobs[x.id]
        assert job.state is JobState.SUCCEEDED and job.attempt == 2
        assert ex.first_outcome == ["fenced"]
        names = sorted(p.name for p in out.iterdir())
        shard_names = sorted(p.name for p in (out / "shards").iterdir())
    assert "cells.csv" not in names and (out / "attempt.txt").read_bytes() == b"2"
    assert shard_names == ["plan.json", "t5_0.bin"]  # nothing of attempt 1, not even partials
