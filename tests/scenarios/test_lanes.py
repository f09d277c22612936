"""Branches are serial FIFO lanes; branches run in parallel up to max_workers (README
"Scheduling rules": R1, R2, R6). Fake gated executors: the order of starts is under test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scenarios.harness import job, make_engine, wf

pytestmark = pytest.mark.anyio


async def test_a_branch_starts_its_jobs_in_submission_order_despite_a_cross_branch_dependency(
    tmp_path: Path,
):
    # x (branch A) needs b2 (branch B); b1 was submitted to branch B before b2 and needs
    # nothing: branch B must run b1 before b2, as submitted.
    s = make_engine(tmp_path, workers=1)
    async with s.engine:
        s.engine.submit(
            "t",
            wf(
                "w",
                job("x", "A", deps=["b2"]),
                job("y", "A"),
                job("b1", "B"),
                job("b2", "B"),
            ),
        )
        order = await s.drain()
    assert order == ["t/b1", "t/b2", "t/x", "t/y"]
    assert s.watch.violations == []


async def test_a_dependency_on_a_later_job_of_the_same_branch_runs_that_job_first(
    tmp_path: Path,
):
    # The only order that can ever run: a2 waits for a1, so a1 goes first in the lane.
    s = make_engine(tmp_path, workers=2)
    async with s.engine:
        s.engine.submit("t", wf("w", job("a2", "A", deps=["a1"]), job("a1", "A"), job("a3", "A")))
        order = await s.drain()
    assert order == ["t/a1", "t/a2", "t/a3"]
    assert s.watch.violations == []


async def test_jobs_of_one_branch_never_overlap_and_branches_fill_every_worker(tmp_path: Path):
    s = make_engine(tmp_path, workers=3)
    async with s.engine:
        s.engine.submit(
            "t",
            wf("w", *(job(f"{b}{i}", b) for b in "ABCD" for i in range(3))),
        )
        await s.until(lambda: len(s.engine._runs) == 3)
        assert s.running_keys() == ["t/A0", "t/B0", "t/C0"]  # 3 workers, oldest lanes first
        await s.finish("t", "B0")
        # the freed worker goes to a waiting lane head, never to B1 beside... any lane is fine,
        # but never two of one lane and never idle
        await s.until(lambda: len(s.engine._runs) == 3)
        order = await s.drain()
    assert s.watch.violations == []
    for b in "ABCD":
        assert [k for k in order if k[2] == b] == [f"t/{b}0", f"t/{b}1", f"t/{b}2"]


async def test_same_branch_name_in_two_workflows_of_a_tenant_is_two_lanes(tmp_path: Path):
    # README: a lane is (tenant, workflow, branch).
    s = make_engine(tmp_path, workers=4)
    async with s.engine:
        s.engine.submit("t", wf("w1", job("a", "main"), job("b", "main")))
        s.engine.submit("t", wf("w2", job("c", "main"), job("d", "main")))
        await s.until(lambda: len(s.engine._runs) == 2)
        assert s.running_keys() == ["t/a", "t/c"]
        order = await s.drain()
    assert s.watch.violations == []
    assert order.index("t/a") < order.index("t/b") and order.index("t/c") < order.index("t/d")


async def test_same_branch_name_of_two_tenants_never_serialises_them(tmp_path: Path):
    s = make_engine(tmp_path, workers=4)
    async with s.engine:
        s.engine.submit("alice", wf("w", job("a1", "main"), job("a2", "main")))
        s.engine.submit("bob", wf("w", job("b1", "main"), job("b2", "main")))
        await s.until(lambda: len(s.engine._runs) == 2)
        assert s.running_keys() == ["alice/a1", "bob/b1"]
        await s.drain()
    assert s.watch.violations == []


async def test_a_failed_job_lets_the_rest_of_its_branch_run_in_order(tmp_path: Path):
    s = make_engine(tmp_path, workers=1)
    async with s.engine:
        s.engine.submit("t", wf("w", job("a1", "A"), job("a2", "A"), job("a3", "A")))
        await s.finish("t", "a1", "fail")
        await s.finish("t", "a2")
        # retrying a1 puts it at the back of the lane: behind a3
        s.engine.retry("t", s.find("t", "a1"))
        order = await s.drain()
    assert order == ["t/a1", "t/a2", "t/a3", "t/a1"]
    assert s.watch.violations == []


async def test_canceling_a_queued_job_keeps_the_branch_order(tmp_path: Path):
    s = make_engine(tmp_path, workers=1)
    async with s.engine:
        s.engine.submit("t", wf("w", *(job(f"a{i}", "A") for i in range(4))))
        await s.until(lambda: len(s.engine._runs) == 1)
        s.engine.cancel("t", s.find("t", "a2"))
        order = await s.drain()
    assert order == ["t/a0", "t/a1", "t/a3"]
    assert s.watch.violations == []


async def test_canceling_a_running_job_starts_the_next_of_its_branch(tmp_path: Path):
    s = make_engine(tmp_path, workers=1)
    async with s.engine:
        s.engine.submit("t", wf("w", job("a0", "A"), job("a1", "A")))
        await s.until(lambda: len(s.engine._runs) == 1)
        s.engine.cancel("t", s.find("t", "a0"))
        await s.until(lambda: s.running_keys() == ["t/a1"])
        await s.drain()
    assert s.watch.violations == []
