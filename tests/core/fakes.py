"""Test-only executors. They fake the work itself (the engine is what is under test here);
the real executors live in wsitui.jobs and have their own tests."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.to_thread
from pydantic import BaseModel

from wsitui.core.executor import Executor, JobContext, JobError, UpstreamSpec
from wsitui.core.records import JobSpec


class LooseParams(BaseModel):
    """Fakes accept any params (the engine's own params handling is tested separately)."""

    model_config = {"extra": "allow"}


class GatedExecutor(Executor):
    """Each job runs until the test releases it with an outcome: exact control over timing."""

    params_model = LooseParams

    def __init__(self, job_type: str = "TISSUE_MASK") -> None:
        self.job_type = job_type  # type: ignore[misc]
        self.gates: dict[str, anyio.Event] = {}
        self.outcomes: dict[str, str] = {}
        self.started: list[str] = []
        self.stubborn: set[str] = set()  # jobs that ignore cancel requests

    def validate(
        self, spec: JobSpec, slide: Path, params: BaseModel, upstream: Sequence[UpstreamSpec]
    ) -> None:
        if "bad" in spec.params:
            raise ValueError("param 'bad' is not allowed: remove it")

    async def run(self, ctx: JobContext) -> None:
        self.started.append(ctx.job.id)
        gate = self.gates.setdefault(ctx.job.id, anyio.Event())
        ctx.report(0, 10)
        while not gate.is_set():
            with anyio.move_on_after(0.01):
                await gate.wait()
            if ctx.job.id not in self.stubborn:
                ctx.check_cancel()
        self.gates.pop(ctx.job.id)
        outcome = self.outcomes.pop(ctx.job.id, "ok")
        if outcome == "fail":
            raise JobError("synthetic failure")
        if outcome == "exit":  # an executor bug that raises a BaseException
            raise SystemExit("synthetic exit")
        ctx.report(10, 10)

    def release(self, job_id: str, outcome: str = "ok") -> None:
        self.outcomes[job_id] = outcome
        self.gates.setdefault(job_id, anyio.Event()).set()


class GatedGpu(GatedExecutor):
    """A gated SEGMENT_CELLS executor whose jobs each hold one GPU (one by default)."""

    def __init__(self) -> None:
        super().__init__("SEGMENT_CELLS")

    def resources(self, params: object) -> dict[str, int]:
        return {"gpu": 1}

    def capacity(self) -> dict[str, int]:
        return {"gpu": 1}


class SleepExecutor(Executor):
    params_model = LooseParams

    """Sleeps per tile in a worker thread, checkpointing each tile and logging it to a file."""

    def __init__(self, tiles: int = 20, tile_seconds: float = 0.05, log: Path | None = None):
        self.job_type = "TISSUE_MASK"  # type: ignore[misc]
        self.tiles = tiles
        self.tile_seconds = tile_seconds
        self.log = log

    async def run(self, ctx: JobContext) -> None:
        await ctx.to_thread(self._work, ctx)

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
