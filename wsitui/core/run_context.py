"""What a running job's executor sees of the engine (`executor.JobContext`), and the controls
the engine keeps for each RUNNING job."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from pydantic import BaseModel

from wsitui.core.executor import JobCanceled, UpstreamJob
from wsitui.core.records import Job
from wsitui.core.store import Store

T = TypeVar("T")


class Revoked:
    """Shared by a run's context parts: set once the engine gave up waiting for the run."""

    __slots__ = ("is_set",)

    def __init__(self) -> None:
        self.is_set = False


class Checkpoint:
    def __init__(self, store: Store, job: Job, revoked: Revoked) -> None:
        self._store, self._job, self._revoked = store, job, revoked
        # The total the run last reported (set from its thread by `report`, so never behind
        # a report the loop has not applied yet); saved with every checkpoint.
        self.tiles_total = job.tiles_total

    def load(self) -> dict[str, Any] | None:
        found = self._store.load_checkpoint(self._job.id, self._job.attempt)
        return None if found is None else found[0]

    def save(self, state: Mapping[str, Any], tiles_done: int) -> None:
        if self._revoked.is_set:  # a run past its cancel deadline must not write any more
            raise JobCanceled(self._job.id)
        # The total goes with the done count: the job row's total is otherwise only saved with
        # throttled progress, and a resume after a kill showed "48 of 0".
        total = max(self.tiles_total, tiles_done)
        self._store.save_checkpoint(self._job.id, self._job.attempt, state, tiles_done, total)


class RunContext:
    """The engine's `JobContext` for one run; every method is safe from any thread.

    `send` hands a progress change to the engine's loop (from any thread)."""

    def __init__(
        self,
        store: Store,
        send: Callable[[Mapping[str, Any]], None],
        job: Job,
        out_dir: Path,
        cancel: threading.Event,
        params: BaseModel,
        upstream: tuple[UpstreamJob, ...],
        limiter: anyio.CapacityLimiter,
    ) -> None:
        self.job = job
        self.params = params
        self.results_dir = out_dir
        self.shards_dir = out_dir / "shards"
        self.upstream = upstream
        self.revoked = Revoked()
        self.checkpoint = Checkpoint(store, job, self.revoked)
        self._send_to_loop = send
        self._cancel = cancel
        self._limiter = limiter
        self.threads_lock = threading.Lock()
        self.threads = 0  # worker threads running this job's code now
        self.on_threads_done: Callable[[], None] | None = None  # set once the run is abandoned

    def _send(self, **change: Any) -> None:
        if self.revoked.is_set:
            raise JobCanceled(self.job.id)
        self._send_to_loop(change)

    def report(
        self, tiles_done: int, tiles_total: int, counters: Mapping[str, int] | None = None
    ) -> None:
        self.checkpoint.tiles_total = int(tiles_total)
        self._send(
            tiles_done=int(tiles_done),
            tiles_total=int(tiles_total),
            counters=None if counters is None else {str(k): int(v) for k, v in counters.items()},
        )

    def restart_progress(self, reason: str) -> None:
        self._send(restart=reason)

    def set_stage(self, stage: str) -> None:
        self._send(stage=" ".join(str(stage).split())[:80])

    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def check_cancel(self) -> None:
        if self._cancel.is_set():
            raise JobCanceled(self.job.id)

    async def to_thread(self, fn: Callable[..., T], *args: Any) -> T:
        def tracked() -> T:
            with self.threads_lock:
                self.threads += 1
            try:
                return fn(*args)
            finally:
                with self.threads_lock:
                    self.threads -= 1
                    done = self.on_threads_done if self.threads == 0 else None
                if done is not None:
                    done()

        # abandon_on_cancel: a run the engine gave up on must not pin shutdown to its thread.
        return await anyio.to_thread.run_sync(
            tracked, limiter=self._limiter, abandon_on_cancel=True
        )


@dataclass(slots=True)
class RunningJob:
    """The engine's controls of one RUNNING job: its stop request and, once built, its context."""

    cancel: threading.Event  # seen by executor threads
    stop: asyncio.Event  # the same request, awaitable on the loop
    ctx: RunContext | None = None

    def request_stop(self) -> None:
        self.cancel.set()
        self.stop.set()
