"""Writing result files so a reader never sees half of one, and never one from a discarded run.

Every write goes to a temporary sibling and is renamed into place. The rename is fenced: a run
the engine gave up on (canceled past `cancel_grace`, its thread left running) keeps its cancel
flag set forever, while a new attempt gets a new context; so a write commits only while its
run's `cancel_requested()` is false, and a discarded run's late output never lands in the
results dir of its retry. An executor declares its fence once for its thread with
`commit_fence(ctx.cancel_requested)`; helpers that write from other threads (shard stores,
writers) take the fence explicitly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path

from wsitui.core.executor import JobCanceled

Fence = Callable[[], bool]  # True when the run has been asked to stop: nothing may commit
_FENCE: ContextVar[Fence | None] = ContextVar("wsitui_commit_fence", default=None)


class Fenced(JobCanceled):
    """A write was refused because its run was asked to stop (or abandoned)."""


@contextlib.contextmanager
def commit_fence(stopped: Fence) -> Iterator[None]:
    """Within this block (this thread, this context), writes commit only while not `stopped()`."""
    token = _FENCE.set(stopped)
    try:
        yield
    finally:
        _FENCE.reset(token)


def current_fence() -> Fence | None:
    """The fence of the calling context (to hand to threads that write on its behalf)."""
    return _FENCE.get()


def commit(tmp: Path, path: Path, fence: Fence | None = None) -> None:
    """Rename `tmp` onto `path` unless the run was asked to stop (then `tmp` is removed and
    `Fenced` raised). `fence`: explicit; else the calling context's; else none."""
    stopped = fence if fence is not None else _FENCE.get()
    if stopped is not None and stopped():
        tmp.unlink(missing_ok=True)
        raise Fenced(f"{path.name} not written: its run was asked to stop")
    tmp.replace(path)


def write_atomic(path: Path, data: bytes, *, fence: Fence | None = None) -> None:
    """Write `data` at `path` through a temporary sibling and a fenced rename.

    A crash leaves either the old file or the new one (plus, at worst, a hidden `.partial`
    sibling that the next write of the same path replaces), never a torn file.
    """
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with tmp.open("wb") as f:
            f.write(data)
        commit(tmp, path, fence)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
