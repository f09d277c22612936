"""A fake JobContext for executor tests.

It is a fake, not the engine's context, on purpose: these tests drive one executor through the
contract in wsitui/core/executor.py (report, stages, cancel, checkpoints, shards, to_thread)
and record exactly what it did, which the engine would aggregate or hide. The engine's own
tests cover the other side of the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from pydantic import BaseModel

from wsitui.core.executor import Executor, JobCanceled, UpstreamJob
from wsitui.core.records import Job, JobState

T = TypeVar("T")


class MemoryCheckpoint:
    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.tiles_done = 0
        self.saves = 0

    def load(self) -> dict[str, Any] | None:
        return self.state

    def save(self, state: Mapping[str, Any], tiles_done: int) -> None:
        self.state = dict(state)
        self.tiles_done = tiles_done
        self.saves += 1


class FakeContext:
    def __init__(
        self,
        executor: Executor,
        slide: Path,
        results_dir: Path,
        params: dict[str, Any] | None = None,
        checkpoint: MemoryCheckpoint | None = None,
    ) -> None:
        raw = params or {}
        self.job = Job(
            id="wf1.mask",
            key="mask",
            workflow_id="wf1",
            tenant="alice",
            job_type="TISSUE_MASK",
            slide=str(slide),
            branch="main",
            depends_on=(),
            params=raw,
            state=JobState.RUNNING,
        )
        # As the engine does: params parsed once with the executor's model.
        self.params: BaseModel = executor.params_model.model_validate(raw)
        self.results_dir = results_dir
        self.shards_dir = results_dir / "shards"
        self.upstream: tuple[UpstreamJob, ...] = ()
        self.checkpoint = checkpoint or MemoryCheckpoint()
        self.reports: list[tuple[int, int]] = []  # every call, raw: the engine would drop lows
        self.restarts: list[str] = []
        self.stages: list[str] = []
        self.cancel = False
        self.on_report: Callable[[int, int], None] | None = None

    def report(
        self, tiles_done: int, tiles_total: int, counters: Mapping[str, int] | None = None
    ) -> None:
        self.reports.append((tiles_done, tiles_total))
        if self.on_report is not None:
            self.on_report(tiles_done, tiles_total)

    def restart_progress(self, reason: str) -> None:
        self.restarts.append(reason)

    def set_stage(self, stage: str) -> None:
        self.stages.append(stage)

    def cancel_requested(self) -> bool:
        return self.cancel

    def check_cancel(self) -> None:
        if self.cancel:
            raise JobCanceled("canceled")

    async def to_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args)


def run(executor: Executor, ctx: FakeContext) -> None:
    anyio.run(executor.run, ctx)
