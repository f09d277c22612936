"""Test-only executors. They fake the work itself (the engine is what is under test here);
the real executors live in wsitui.jobs and have their own tests."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.to_thread

from wsitui.core.executor import JobContext, JobError
from wsitui.core.models import JobSpec, JobType


class GatedExecutor:
    """Each job runs until the test releases it with an outcome: exact control over timing."""

    def __init__(self, job_type: JobType = JobType.TISSUE_MASK) -> None:
        self.job_type = job_type
        self.gates: dict[str, anyio.Event] = {}
        self.outcomes: dict[str, str] = {}
        self.started: list[str] = []

    def validate(self, spec: JobSpec, slide: Path) -> None:
        if "bad" in spec.params:
            raise ValueError("param 'bad' is not allowed: remove it")

    async def run(self, ctx: JobContext) -> None:
        self.started.append(ctx.job.id)
        gate = self.gates.setdefault(ctx.job.id, anyio.Event())
        ctx.report(0, 10)
        while not gate.is_set():
            with anyio.move_on_after(0.01):
                await gate.wait()
            ctx.check_cancel()
        self.gates.pop(ctx.job.id)
        if self.outcomes.pop(ctx.job.id, "ok") == "fail":
            raise JobError("synthetic failure")
        ctx.report(10, 10)

    def release(self, job_id: str, outcome: str = "ok") -> None:
        self.outcomes[job_id] = outcome
        self.gates.setdefault(job_id, anyio.Event()).set()


class SleepExecutor:
    """Sleeps per tile in a worker thread, checkpointing each tile and logging it to a file."""

    def __init__(self, tiles: int = 20, tile_seconds: float = 0.05, log: Path | None = None):
        self.job_type = JobType.TISSUE_MASK
        self.tiles = tiles
        self.tile_seconds = tile_seconds
        self.log = log

    def validate(self, spec: JobSpec, slide: Path) -> None:
        return None

    async def run(self, ctx: JobContext) -> None:
        await anyio.to_thread.run_sync(self._work, ctx)

    def _work(self, ctx: JobContext) -> None:
        saved = ctx.checkpoint.load()
        start = saved["next_tile"] if saved else 0
        ctx.report(start, self.tiles)
        for tile in range(start, self.tiles):
            ctx.check_cancel()
            time.sleep(self.tile_seconds)
            if self.log is not None:
                with self.log.open("a") as f:
                    f.write(f"{ctx.job.id} {ctx.job.attempt} {tile}\n")
            ctx.checkpoint.save({"next_tile": tile + 1}, tile + 1)
            ctx.report(tile + 1, self.tiles)
