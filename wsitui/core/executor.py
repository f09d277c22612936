"""The contract between the engine and per-job-type executors.

An executor is a plugin for one JobType. The engine calls `validate` at submission (bad params
are refused before anything runs) and `run` when the job starts. `run` is async but must do its
CPU work off the event loop (`anyio.to_thread.run_sync`); inside that thread it reports progress,
checks for cancellation at tile boundaries and saves checkpoints through the JobContext, all of
which are safe to call from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from wsitui.core.models import Job, JobSpec, JobType


class JobCanceled(Exception):
    """Raised by an executor (via JobContext.check_cancel) to stop at a tile boundary."""


class JobError(Exception):
    """A failure with a one-line message meant for the user (the job ends FAILED with it)."""


class CheckpointStore(Protocol):
    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: Mapping[str, Any], tiles_done: int) -> None:
        """Durably record progress; after a crash the job resumes from the last save."""
        ...


class JobContext(Protocol):
    job: Job
    results_dir: Path  # created by the engine, inside the data dir
    checkpoint: CheckpointStore

    def report(self, tiles_done: int, tiles_total: int) -> None: ...

    def cancel_requested(self) -> bool: ...

    def check_cancel(self) -> None:
        """Raise JobCanceled if the user (or shutdown) asked this job to stop."""
        ...


class Executor(Protocol):
    job_type: JobType

    def validate(self, spec: JobSpec, slide: Path) -> None:
        """Raise ValueError with a one-line message if the spec cannot run (e.g. bad params)."""
        ...

    async def run(self, ctx: JobContext) -> None: ...
