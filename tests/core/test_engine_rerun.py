"""Rerun: a SUCCEEDED job run again as a new attempt in its lane (rules.py: rerun)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.core.engine_helpers import job, until
from tests.core.fakes import GatedExecutor
from wsitui.core.engine import Engine, InvalidRequest
from wsitui.core.events import JobStateChanged
from wsitui.core.records import JobState, WorkflowSpec

pytestmark = pytest.mark.anyio


async def test_a_succeeded_job_reruns_as_a_new_attempt_and_succeeded_dependents_stay(
    tmp_path: Path,
):
    ex = GatedExecutor()
    seen: list[tuple[str, str, int, str]] = []
    mismatched: list[tuple[str, int]] = []  # a listener's exception would not reach the test
    async with Engine(tmp_path / "d", [ex]) as engine:
        reader = sqlite3.connect(tmp_path / "d" / "state.db")

        def committed_first(event: object) -> None:
            if isinstance(event, JobStateChanged):
                row = reader.execute(
                    "SELECT state, attempt FROM jobs WHERE id=?", (event.job.id,)
                ).fetchone()
                seen.append((event.job.id, row[0], row[1], event.reason))
                mismatched.extend([] if row == (event.job.state, event.job.attempt) else [row])

        engine.bus.add_listener(committed_first)
        w = engine.submit(
            "t",
            WorkflowSpec(name="w", jobs=(job("a"), job("b", "x", ("a",)), job("c", "y", ("a",)))),
        )
        a, b, c = (j.id for j in w.jobs)
        ex.release(a)
        await until(engine, lambda: b in ex.started and c in ex.started)
        ex.release(b)
        await until(engine, lambda: engine.job("t", b).state is JobState.SUCCEEDED)

        # A dependent still running reads a's outputs: no rerun under it.
        with pytest.raises(InvalidRequest, match="'c' runs on its outputs"):
            engine.rerun("t", a)
        ex.release(c, "fail")
        await until(engine, lambda: engine.job("t", c).state is JobState.FAILED)

        rerun = engine.rerun("t", a)
        assert (rerun.attempt, rerun.tiles_done) == (2, 0)
        assert [(t.state, t.attempt, t.reason) for t in engine.timeline("t", a)[-2:]] == [
            (JobState.PENDING, 2, "rerun: attempt 2"),
            (JobState.RUNNING, 2, "started"),
        ]
        await until(engine, lambda: engine.job("t", a).state is JobState.RUNNING)
        # c retried now waits for a's new attempt (R4); b keeps its success.
        engine.retry("t", c)
        assert engine.job("t", b).state is JobState.SUCCEEDED
        assert engine.job("t", b).attempt == 1
        assert ex.started.count(c) == 1  # not started beside a's rerun
        assert engine.job("t", c).state is JobState.PENDING
        ex.release(a)
        await until(engine, lambda: engine.job("t", c).state is JobState.RUNNING)
        ex.release(c)
        await until(engine, lambda: engine.is_idle())
        assert engine.job("t", a).state is JobState.SUCCEEDED
        assert engine.job("t", a).attempt == 2
        assert engine.job("t", c).state is JobState.SUCCEEDED
        reader.close()
    assert (a, "PENDING", 2, "rerun: attempt 2") in seen
    assert mismatched == []  # every state event was committed before it was published


async def test_only_a_succeeded_job_is_rerun(tmp_path: Path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex]) as engine:
        (a,) = (j.id for j in engine.submit("t", WorkflowSpec(name="w", jobs=(job("a"),))).jobs)
        await until(engine, lambda: a in ex.started)
        with pytest.raises(InvalidRequest, match="is RUNNING: only a succeeded job can be rerun"):
            engine.rerun("t", a)
        ex.release(a, "fail")
        await until(engine, lambda: engine.job("t", a).state is JobState.FAILED)
        with pytest.raises(InvalidRequest, match="retry a failed or canceled one"):
            engine.rerun("t", a)


async def test_a_queued_dependent_moves_behind_its_rerun_upstream_in_one_lane(tmp_path: Path):
    """a and b share a lane; b waits behind another job when a is rerun: it must not stand
    at the lane's head waiting for a, queued behind it (a deadlock)."""
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=1) as engine:
        w = engine.submit("t", WorkflowSpec(name="w", jobs=(job("a"), job("z", "z"))))
        a, z = (j.id for j in w.jobs)
        ex.release(a)
        await until(engine, lambda: z in ex.started)  # the one worker runs z
        b = engine.add_job("t", w.workflow.id, job("b", deps=("a",))).id  # queued: no worker
        engine.rerun("t", a)
        assert engine.job("t", b).seq > engine.job("t", a).seq
        ex.release(z)
        await until(engine, lambda: engine.job("t", a).state is JobState.RUNNING)
        ex.release(a)
        await until(engine, lambda: engine.job("t", b).state is JobState.RUNNING)
        ex.release(b)
        await until(engine, lambda: engine.is_idle())
        assert ex.started == [a, z, a, b]


async def test_a_rerun_survives_a_restart(tmp_path: Path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex]) as engine:
        w = engine.submit("t", WorkflowSpec(name="w", jobs=(job("a"), job("b", deps=("a",)))))
        a, b = (j.id for j in w.jobs)
        ex.release(a)
        await until(engine, lambda: b in ex.started)
        ex.release(b)
        await until(engine, lambda: engine.is_idle())
        engine.rerun("t", a)
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex]) as engine:
        await until(engine, lambda: engine.job("t", a).state is JobState.RUNNING)
        assert engine.job("t", a).attempt == 2
        assert engine.job("t", b).state is JobState.SUCCEEDED
        ex.release(a)
        await until(engine, lambda: engine.is_idle())
        assert ex.started == [a]


async def test_a_job_stopped_after_its_rerun_upstream_was_canceled_comes_back_blocked(
    tmp_path: Path,
):
    """c runs on b's outputs; a (b's upstream) is rerun and that attempt canceled while c runs,
    so c's upstream chain is canceled. When the engine stops, c must come back blocked (out of
    its lane, R4), not running again first; the job behind it in its lane runs instead."""
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=1) as engine:
        spec = (job("a"), job("b", deps=("a",)), job("c", "y", ("b",)), job("d", "y"))
        w = engine.submit("t", WorkflowSpec(name="w", jobs=spec))
        a, b, c, d = (j.id for j in w.jobs)
        ex.release(a)
        await until(engine, lambda: b in ex.started)
        ex.release(b)
        await until(engine, lambda: c in ex.started)
        engine.rerun("t", a)  # b, its direct dependent, is not running: allowed
        engine.cancel("t", a)
        assert engine.job("t", c).blocked
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=1) as engine:
        await until(engine, lambda: engine.job("t", d).state is JobState.RUNNING)
        got = engine.job("t", c)
        assert (got.state, got.blocked) == (JobState.PENDING, True)
        ex.release(d)
        await until(engine, lambda: engine.is_idle())
        engine.retry("t", a)
        ex.release(a)
        await until(engine, lambda: engine.job("t", c).state is JobState.RUNNING)
        ex.release(c)
        await until(engine, lambda: engine.is_idle())
