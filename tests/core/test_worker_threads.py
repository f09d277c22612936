"""A RUNNING job runs: every job the scheduler starts gets a thread for its blocking work at
once, up to `max_workers` (R2 is the bound), whatever its job type's own pool size (`threads`).
Before, the pool was `threads` per job type (2): with max_workers 4, four TISSUE_MASK jobs of
four branches were all RUNNING but the third and fourth did nothing until one of the first two
ended (measured through `wsitui run`: first progress 0.5 s after their start)."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from tests.core.fakes import LooseParams
from wsitui.core.engine import Engine
from wsitui.core.executor import Executor, JobContext
from wsitui.core.records import JobSpec, JobState, WorkflowSpec

pytestmark = pytest.mark.anyio


class MeetingExecutor(Executor):
    """Each job's blocking work waits in its thread until `parties` jobs are in theirs."""

    job_type = "TISSUE_MASK"
    params_model = LooseParams
    threads = 1  # a pool smaller than the engine's workers

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=5)

    async def run(self, ctx: JobContext) -> None:
        await ctx.to_thread(self.barrier.wait)


async def test_every_started_job_runs_at_once_up_to_max_workers(tmp_path: Path):
    ex = MeetingExecutor(parties=3)
    jobs = tuple(
        JobSpec(id=f"j{i}", type="TISSUE_MASK", slide="s.svs", branch=f"b{i}") for i in range(3)
    )
    async with Engine(tmp_path, [ex], max_workers=3) as engine:
        wf = engine.submit("t", WorkflowSpec(name="w", jobs=jobs))
        assert engine.stats().running == 3
        with anyio.fail_after(10):
            await engine.wait_idle()
        states = [j.state for j in engine.workflow("t", wf.workflow.id).jobs]
    assert states == [JobState.SUCCEEDED] * 3  # a job without a thread broke the meeting
