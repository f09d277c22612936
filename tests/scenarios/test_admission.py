"""At most max_active_users tenants with work in flight; the others wait in arrival order until
an active tenant has finished ALL its jobs (README "Scheduling rules", R3). Fake gated
executors: which tenant runs when is under test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scenarios.harness import job, make_engine, wf

pytestmark = pytest.mark.anyio


async def test_a_fourth_tenant_waits_until_an_active_one_finished_all_its_jobs(tmp_path: Path):
    s = make_engine(tmp_path, workers=8, users=3)
    async with s.engine:
        for t in ("a", "b", "c"):
            s.engine.submit(t, wf("w", job(f"{t}1"), job(f"{t}2")))
        s.engine.submit("d", wf("w", job("d1")))
        await s.until(lambda: len(s.engine._runs) == 3)
        assert s.running_keys() == ["a/a1", "b/b1", "c/c1"]
        await s.finish("a", "a1")  # a's second job starts: a stays active between them
        await s.until(lambda: "a/a2" in s.running_keys())
        assert "d/d1" not in s.running_keys()
        assert s.engine.stats().waiting == ("d",)
        await s.finish("a", "a2")  # a has nothing left: d goes in
        await s.until(lambda: "d/d1" in s.running_keys())
        await s.drain()
    assert s.watch.violations == []
    assert s.watch.admitted == ["a", "b", "c", "d"]


async def test_many_tenants_arriving_at_once_are_admitted_in_arrival_order(tmp_path: Path):
    s = make_engine(tmp_path, workers=8, users=1)
    tenants = ["t9", "t1", "t5", "t3", "t7", "t2"]  # arrival order is not name order
    async with s.engine:
        for t in tenants:
            s.engine.submit(t, wf("w", job("j")))
        assert s.engine.stats().waiting == tuple(tenants[1:])
        await s.drain()
    assert s.watch.admitted == tenants
    assert s.watch.starts == [f"{t}/j" for t in tenants]
    assert s.watch.violations == []


async def test_an_active_tenant_that_submits_more_work_keeps_its_slot(tmp_path: Path):
    s = make_engine(tmp_path, workers=4, users=1)
    async with s.engine:
        s.engine.submit("a", wf("w1", job("a1")))
        s.engine.submit("b", wf("w", job("b1")))
        await s.until(lambda: s.running_keys() == ["a/a1"])
        s.engine.submit("a", wf("w2", job("a2")))  # while active: no new arrival
        await s.until(lambda: s.running_keys() == ["a/a1", "a/a2"])
        await s.finish("a", "a1")
        await s.finish("a", "a2")
        await s.until(lambda: s.running_keys() == ["b/b1"])
        await s.drain()
    assert s.watch.violations == []


async def test_a_tenant_whose_jobs_all_fail_or_are_canceled_frees_its_slot(tmp_path: Path):
    s = make_engine(tmp_path, workers=4, users=1)
    async with s.engine:
        s.engine.submit("a", wf("w", job("a1", "A"), job("a2", "A", deps=["a1"]), job("a3", "B")))
        s.engine.submit("b", wf("w", job("b1")))
        await s.until(lambda: s.running_keys() == ["a/a1", "a/a3"])
        s.engine.cancel("a", s.find("a", "a3"))
        await s.finish("a", "a1", "fail")  # a2 is blocked: a has nothing that can run
        await s.until(lambda: s.running_keys() == ["b/b1"])
        assert s.engine.stats().active == ("b",)
        # a retries: it arrives again, behind nobody (b is active, one slot)
        s.engine.retry("a", s.find("a", "a1"))
        assert s.engine.stats().waiting == ("a",)
        await s.drain()
    assert s.watch.violations == []
    assert s.watch.admitted == ["a", "b", "a"]


async def test_a_waiting_tenant_that_cancels_everything_leaves_the_queue(tmp_path: Path):
    s = make_engine(tmp_path, workers=4, users=1)
    async with s.engine:
        s.engine.submit("a", wf("w", job("a1")))
        s.engine.submit("b", wf("w", job("b1"), job("b2", "B")))
        s.engine.submit("c", wf("w", job("c1")))
        assert s.engine.stats().waiting == ("b", "c")
        s.engine.cancel("b", s.find("b", "b1"))
        s.engine.cancel("b", s.find("b", "b2"))
        assert s.engine.stats().waiting == ("c",)
        await s.finish("a", "a1")
        await s.until(lambda: s.running_keys() == ["c/c1"])
        await s.drain()
    assert s.watch.admitted == ["a", "c"]
    assert s.watch.violations == []


async def test_a_free_worker_is_never_idle_while_an_active_tenant_has_a_ready_job(
    tmp_path: Path,
):
    # Tenant a takes both workers before b arrives (no worker idles); then every freed
    # worker goes to the tenant served longest ago (R6): b first, then alternating.
    s = make_engine(tmp_path, workers=2, users=2)
    async with s.engine:
        s.engine.submit("a", wf("w", *(job(f"a{i}", f"L{i}") for i in range(4))))
        s.engine.submit("b", wf("w", *(job(f"b{i}", f"L{i}") for i in range(2))))
        assert s.running_keys() == ["a/a0", "a/a1"]
        await s.finish("a", "a0")
        await s.until(lambda: s.running_keys() == ["a/a1", "b/b0"])
        await s.finish("a", "a1")
        await s.until(lambda: s.running_keys() == ["a/a2", "b/b0"])
        await s.finish("a", "a2")
        await s.until(lambda: s.running_keys() == ["b/b0", "b/b1"])
        order = await s.drain()
    assert s.watch.violations == []
    assert sorted(order) == sorted([f"a/a{i}" for i in range(4)] + ["b/b0", "b/b1"])


async def test_a_dependency_chain_across_branches_keeps_its_tenant_active(tmp_path: Path):
    # Between a1 ending and a2 (another branch, depending on a1) starting, a stays active.
    s = make_engine(tmp_path, workers=4, users=1)
    async with s.engine:
        s.engine.submit("a", wf("w", job("a1", "A"), job("a2", "B", deps=["a1"])))
        s.engine.submit("b", wf("w", job("b1")))
        await s.finish("a", "a1")
        await s.until(lambda: s.running_keys() == ["a/a2"])
        await s.drain()
    assert s.watch.admitted == ["a", "b"]
    assert s.watch.violations == []


async def test_held_jobs_do_not_make_a_tenant_active(tmp_path: Path):
    s = make_engine(tmp_path, workers=4, users=1)
    async with s.engine:
        s.engine.submit("a", wf("w", job("a1")), start=False)  # held: nothing in flight
        s.engine.submit("b", wf("w", job("b1")))
        await s.until(lambda: s.running_keys() == ["b/b1"])
        s.engine.start_workflow("a", s.engine.workflows("a")[0].workflow.id)
        assert s.engine.stats().waiting == ("a",)
        await s.drain()
    assert s.watch.admitted == ["b", "a"]
    assert s.watch.violations == []
