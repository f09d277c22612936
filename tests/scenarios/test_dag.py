"""DAG dependencies (README "Scheduling rules", R4/R5): a job starts only after every
dependency SUCCEEDED; dependants of a failed or canceled job are blocked (PENDING, out of their
lane, holding no slot) and the rest of every branch runs on. Fake gated executors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scenarios.harness import job, make_engine, wf
from wsitui.core.records import JobState

pytestmark = pytest.mark.anyio


async def test_a_diamond_joins_only_after_both_sides_succeeded(tmp_path: Path):
    s = make_engine(tmp_path, workers=4)
    async with s.engine:
        s.engine.submit(
            "t",
            wf(
                "w",
                job("root", "R"),
                job("left", "L", deps=["root"]),
                job("right", "Q", deps=["root"]),
                job("join", "R", deps=["left", "right"]),
            ),
        )
        await s.finish("t", "root")
        await s.until(lambda: s.running_keys() == ["t/left", "t/right"])
        await s.finish("t", "left")
        assert s.running_keys() == ["t/right"]  # join waits for right
        await s.finish("t", "right")
        await s.until(lambda: s.running_keys() == ["t/join"])
        await s.drain()
    assert s.watch.violations == []


@pytest.mark.parametrize("how", ["fail", "cancel-running", "cancel-queued"])
async def test_dependants_of_a_failed_or_canceled_job_are_blocked_and_its_branch_runs_on(
    tmp_path: Path, how: str
):
    s = make_engine(tmp_path, workers=1, users=1)
    async with s.engine:
        s.engine.submit(
            "t",
            wf(
                "w",
                job("first", "A"),
                job("up", "A"),
                job("after", "A"),  # same branch, not a dependant: runs
                job("child", "B", deps=["up"]),
                job("grandchild", "B", deps=["child"]),
                job("other", "B"),  # behind the blocked ones in B: runs
            ),
        )
        s.engine.submit("u", wf("w", job("u1")))  # waits for t to finish all it can
        up = s.find("t", "up")
        if how == "cancel-queued":  # up waits behind first in branch A
            s.engine.cancel("t", up)
            await s.finish("t", "first")
        else:
            await s.finish("t", "first")
            await s.until(lambda: up in s.engine._runs)
            if how == "fail":
                await s.finish("t", "up", "fail")
            else:
                s.engine.cancel("t", up)
                await s.until(lambda: up not in s.engine._runs)
        order = await s.drain()
        wf_id = s.engine.workflows("t")[0].workflow.id
        jobs = {j.key: j for j in s.engine.workflow("t", wf_id).jobs}
        assert jobs["child"].state is JobState.PENDING and jobs["child"].blocked
        assert jobs["grandchild"].state is JobState.PENDING and jobs["grandchild"].blocked
        assert jobs["after"].state is JobState.SUCCEEDED
        assert jobs["other"].state is JobState.SUCCEEDED
        # blocked work holds no slot: the waiting tenant ran
        assert "u/u1" in order and s.engine.stats().active == ()
        # a retry of the upstream unblocks them; they run after it, in dependency order
        s.engine.retry("t", up)
        order = await s.drain()
    assert order[-3:] == ["t/up", "t/child", "t/grandchild"]
    assert s.watch.violations == []


async def test_a_dependant_waiting_at_its_lane_head_never_lets_a_later_job_jump_it(
    tmp_path: Path,
):
    # Lane B: [child (needs up, still running), later]: FIFO keeps later behind child.
    s = make_engine(tmp_path, workers=4)
    async with s.engine:
        s.engine.submit(
            "t", wf("w", job("up", "A"), job("child", "B", deps=["up"]), job("later", "B"))
        )
        await s.until(lambda: s.running_keys() == ["t/up"])
        await s.finish("t", "up")
        await s.until(lambda: s.running_keys() == ["t/child"])
        order = await s.drain()
    assert order == ["t/up", "t/child", "t/later"]
    assert s.watch.violations == []


async def test_a_job_blocked_through_a_succeeded_upstream_names_the_failed_job(tmp_path: Path):
    # up -> mid -> low. up and mid succeed; up is rerun and the rerun fails; mid keeps its
    # outputs (SUCCEEDED) but the engine blocks low through it (R4: an upstream, transitively,
    # FAILED). Every face read "BLOCKED an upstream job failed" and `r` found nothing to
    # retry: the phase looked for the failed job only through PENDING upstreams.
    from tests.core.oracle import check
    from wsitui.core.phase import JobPhase, job_phases
    from wsitui.tui.badges import badges

    s = make_engine(tmp_path, workers=2, users=1)
    logged: list[dict[str, object]] = []
    s.engine.bus.add_listener(lambda e: logged.append(e.to_json()))
    async with s.engine:
        w = s.engine.submit("a", wf("w", job("up", "A"), job("mid", "B", ("up",))))
        await s.finish("a", "up")
        await s.finish("a", "mid")
        low = s.engine.add_job("a", w.workflow.id, job("low", "C", ("mid",)), start=False)
        s.engine.rerun("a", s.find("a", "up"))
        await s.finish("a", "up", "fail")
        s.engine.start("a", [low.id])
        jobs = s.engine.workflow("a", w.workflow.id).jobs
        assert s.engine.job("a", low.id).blocked  # the engine's R4, as rules.py states it
        info = job_phases(jobs)[low.id]
        assert info.phase is JobPhase.BLOCKED
        assert info.reason == "upstream up failed; retry it to go on"
        assert badges(jobs)[low.id].upstream == "up"
        s.engine.submit("b", wf("w", job("b1", "A")))  # a holds no slot: b is admitted
        await s.finish("b", "b1")
        s.engine.retry("a", s.find("a", "up"))  # what the card says to do: low goes on
        await s.finish("a", "up")
        await s.until(lambda: s.engine.job("a", low.id).state.name == "RUNNING")
        await s.drain()
    assert s.watch.violations == []
    # The oracle reads R4 the same way (it took low for live work when a was released).
    assert check(logged, max_workers=2, max_active_users=1, strict=True).violations == []
