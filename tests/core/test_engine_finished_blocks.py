"""A finished job's block never changes: a rerun upstream that fails blocks the PENDING jobs
below a SUCCEEDED one (R4 is transitive), and no event says the SUCCEEDED job was blocked or
unblocked (qa9: it received "blocked: …" / "unblocked" events, and its stored flag flipped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.engine_helpers import job, until
from tests.core.fakes import GatedExecutor
from wsitui.core.engine import Engine
from wsitui.core.events import JobStateChanged
from wsitui.core.phase import JobPhase, job_phases
from wsitui.core.records import JobState, WorkflowSpec
from wsitui.core.store import Store

pytestmark = pytest.mark.anyio


async def test_a_succeeded_job_gets_no_block_when_its_rerun_upstream_fails(tmp_path: Path):
    ex = GatedExecutor()
    events: list[JobStateChanged] = []
    async with Engine(tmp_path / "d", [ex]) as engine:
        engine.bus.add_listener(
            lambda e: events.append(e) if isinstance(e, JobStateChanged) else None
        )
        spec = WorkflowSpec(name="w", jobs=(job("a"), job("b", "x", ("a",)), job("c", "y", ("b",))))
        w = engine.submit("t", spec, start=False)
        a, b, c = (j.id for j in w.jobs)
        engine.start("t", [a, b])
        ex.release(a)
        await until(engine, lambda: b in ex.started)
        ex.release(b)
        await until(engine, lambda: engine.job("t", b).state is JobState.SUCCEEDED)

        events.clear()
        engine.rerun("t", a)
        await until(engine, lambda: engine.job("t", a).state is JobState.RUNNING)
        ex.release(a, "fail")
        await until(engine, lambda: engine.job("t", a).state is JobState.FAILED)
        # c (held, below b) is blocked through b; b itself is finished and stays as it was.
        assert engine.job("t", c).blocked and not engine.job("t", b).blocked
        engine.start("t", [c])  # parked, not run: its culprit is named through b
        phases = job_phases(engine.workflow("t", w.workflow.id).jobs)
        assert phases[c].phase is JobPhase.BLOCKED and phases[c].reason.startswith("upstream a ")
        engine.retry("t", a)
        assert not engine.job("t", c).blocked and not engine.job("t", b).blocked
        await until(engine, lambda: ex.started.count(a) == 3 and c in ex.started)
        ex.release(a)
        ex.release(c)
        await until(engine, lambda: engine.is_idle())

    about_b = [(e.reason, e.job.blocked) for e in events if e.job.id == b]
    assert about_b == []  # b is SUCCEEDED throughout: nothing happened to it
    about_c = [e.reason.split(":")[0] for e in events if e.job.id == c]
    assert about_c[:3] == ["blocked", "started by user", "unblocked"]
    assert all(not e.job.state.terminal for e in events if e.job.blocked)
    store = Store(tmp_path / "d" / "state.db", readonly=True)
    try:
        assert not next(j for j in store.jobs() if j.id == b).blocked
    finally:
        store.close()
