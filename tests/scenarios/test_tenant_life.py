"""A tenant's slot through what the TUI does to it (engine API): more work while waiting, a
rerun or a held job started while others hold every slot, a cancel of a running job, two
workflows sharing one worker. README "Scheduling rules": active from admission until no job
can still run (running or queued); waiting tenants in arrival order. Fake gated executors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scenarios.harness import job, make_engine, wf

pytestmark = pytest.mark.anyio


async def test_a_waiting_tenant_that_submits_more_work_keeps_its_place(tmp_path: Path):
    s = make_engine(tmp_path, workers=4, users=1)
    async with s.engine:
        s.engine.submit("a", wf("w", job("a1")))
        b = s.engine.submit("b", wf("w", job("b1")))
        s.engine.submit("c", wf("w", job("c1")))
        s.engine.submit("b", wf("w2", job("b2")))  # a new workflow while b waits
        s.engine.add_job("b", b.workflow.id, job("b3", "other"))  # and a job in its first one
        assert s.engine.stats().waiting == ("b", "c")
        await s.finish("a", "a1")
        await s.until(lambda: s.running_keys() == ["b/b1", "b/b2", "b/b3"])
        await s.drain()
    assert s.watch.admitted == ["a", "b", "c"]
    assert s.watch.violations == []


async def test_a_rerun_or_a_held_job_started_while_slots_are_full_waits_in_arrival_order(
    tmp_path: Path,
):
    s = make_engine(tmp_path, workers=4, users=1)
    async with s.engine:
        s.engine.submit("a", wf("w", job("a1")))
        await s.finish("a", "a1")  # a is done: released
        s.engine.submit("b", wf("w", job("b1")))
        held = s.engine.submit("c", wf("w", job("c1")), start=False)  # holds no slot
        s.engine.rerun("a", s.find("a", "a1"))  # a arrives again, behind nobody waiting
        s.engine.submit("d", wf("w", job("d1")))
        s.engine.start("c", [held.jobs[0].id])  # c arrives when it starts: after d
        assert s.engine.stats().active == ("b",)
        assert s.engine.stats().waiting == ("a", "d", "c")
        order = await s.drain()
    assert order == ["a/a1", "b/b1", "a/a1", "d/d1", "c/c1"]
    assert s.watch.admitted == ["a", "b", "a", "d", "c"]
    assert s.watch.violations == []


async def test_a_tenant_canceling_its_running_job_keeps_its_slot_until_the_job_ended(
    tmp_path: Path,
):
    s = make_engine(tmp_path, workers=4, users=1)
    async with s.engine:
        s.engine.submit("a", wf("w", job("a1"), job("a2")))
        s.engine.submit("b", wf("w", job("b1")))
        a1 = s.find("a", "a1")
        await s.until(lambda: s.running_keys() == ["a/a1"])
        s.engine.cancel("a", s.find("a", "a2"))  # the queued one: a1 still runs
        s.cpu.stubborn.add(a1)  # it ignores the cancel: ended after cancel_grace
        s.engine.cancel("a", a1)
        assert s.engine.stats().active == ("a",) and s.engine.stats().waiting == ("b",)
        await s.until(lambda: s.running_keys() == ["b/b1"])
        assert s.engine.job("a", a1).state == "CANCELED"
        await s.drain()
    assert s.watch.admitted == ["a", "b"]
    assert s.watch.violations == []


async def test_two_workflows_of_a_tenant_on_one_worker_run_in_submission_order(
    tmp_path: Path,
):
    """Same branch name, two workflows: two lanes (never serialised on the name), and with
    one worker the oldest ready job goes first across them."""
    s = make_engine(tmp_path, workers=1, users=3)
    async with s.engine:
        s.engine.submit("a", wf("w1", job("x1", "main"), job("x2", "main")))
        s.engine.submit("a", wf("w2", job("y1", "main"), job("y2", "main")))
        s.engine.submit("b", wf("w1", job("z1", "main")))
        order = await s.drain()
    # a, b alternate by least recent service; a's own jobs go oldest first (x1 x2 y1 y2).
    assert order == ["a/x1", "b/z1", "a/x2", "a/y1", "a/y2"]
    assert s.watch.violations == []
