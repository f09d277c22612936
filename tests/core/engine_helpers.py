"""What the engine tests share: a job spec in one line and a bounded wait on the engine."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec


def job(key: str, branch: str = "main", deps: tuple[str, ...] = (), **params: object) -> JobSpec:
    """A TISSUE_MASK job `key` in `branch`, after `deps` (the fake executors run any type)."""
    return JobSpec(
        id=key, type="TISSUE_MASK", slide="s.svs", branch=branch, depends_on=deps, params=params
    )


async def until(engine: Engine, predicate: Callable[[], bool], seconds: float = 10) -> None:
    """Wait until `predicate` holds; fail the test after `seconds`."""
    with anyio.fail_after(seconds):
        await engine.wait_until(predicate)
