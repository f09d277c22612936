"""One test (or more) per scheduling rule, driven through the real engine with gated jobs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio
import pytest

from tests.core.fakes import GatedExecutor
from wsitui.core.engine import Engine, InvalidRequest, NotFound
from wsitui.core.events import JobStateChanged, TenantAdmitted
from wsitui.core.records import JobSpec, JobState, WorkflowSpec, WorkflowState

pytestmark = pytest.mark.anyio


def wf(name: str, *jobs: tuple[str, str] | tuple[str, str, tuple[str, ...]]) -> WorkflowSpec:
    """jobs: (id, branch[, depends_on])."""
    specs = []
    for job in jobs:
        key, branch = job[0], job[1]
        deps = job[2] if len(job) > 2 else ()  # type: ignore[misc]
        specs.append(
            JobSpec(id=key, type="TISSUE_MASK", slide="s.svs", branch=branch, depends_on=deps)
        )
    return WorkflowSpec(name=name, jobs=tuple(specs))


def running(engine: Engine) -> set[str]:
    return {
        j.id
        for t in engine.tenants()
        for w in engine.workflows(t)
        for j in engine.workflow(t, w.workflow.id).jobs
        if j.state is JobState.RUNNING
    }


async def settle(engine: Engine, ex: GatedExecutor, job_id: str, outcome: str = "ok") -> None:
    ex.release(job_id, outcome)
    with anyio.fail_after(5):
        await engine.wait_until(lambda: engine._jobs[job_id].state.terminal)


@pytest.fixture
def ex() -> GatedExecutor:
    return GatedExecutor()


def make(tmp_path: Path, ex: GatedExecutor, **kw: int) -> Engine:
    return Engine(tmp_path / "data", [ex], **kw)


# ---- R1: lanes -------------------------------------------------------------------------------
async def test_lane_runs_one_job_at_a_time_in_fifo_order(tmp_path, ex):
    async with make(tmp_path, ex) as engine:
        w = engine.submit("alice", wf("w", ("a", "main"), ("b", "main"), ("c", "main")))
        ids = [j.id for j in w.jobs]
        assert running(engine) == {ids[0]}
        await settle(engine, ex, ids[0])
        assert running(engine) == {ids[1]}
        await settle(engine, ex, ids[1])
        assert running(engine) == {ids[2]}
        await settle(engine, ex, ids[2])
        assert ex.started == ids


async def test_two_tenants_main_branches_run_at_the_same_time(tmp_path, ex):
    async with make(tmp_path, ex) as engine:
        a = engine.submit("alice", wf("w", ("x", "main"), ("y", "main")))
        b = engine.submit("bob", wf("w", ("x", "main"), ("y", "main")))
        assert running(engine) == {a.jobs[0].id, b.jobs[0].id}
        for job_id in running(engine):
            await settle(engine, ex, job_id)


async def test_same_branch_name_in_two_workflows_are_two_lanes(tmp_path, ex):
    async with make(tmp_path, ex) as engine:
        a = engine.submit("alice", wf("w1", ("x", "main")))
        b = engine.submit("alice", wf("w2", ("x", "main")))
        assert running(engine) == {a.jobs[0].id, b.jobs[0].id}
        for job_id in running(engine):
            await settle(engine, ex, job_id)


async def test_cancel_middle_job_of_a_lane(tmp_path, ex):
    async with make(tmp_path, ex) as engine:
        w = engine.submit("alice", wf("w", ("a", "main"), ("b", "main"), ("c", "main")))
        a, b, c = (j.id for j in w.jobs)
        engine.cancel("alice", b)
        assert engine.job("alice", b).state is JobState.CANCELED
        await settle(engine, ex, a)
        assert running(engine) == {c}
        await settle(engine, ex, c)
        assert ex.started == [a, c]


# ---- R2: workers -----------------------------------------------------------------------------
async def test_six_branches_four_workers(tmp_path, ex):
    async with make(tmp_path, ex, max_workers=4) as engine:
        w = engine.submit("alice", wf("w", *[(f"j{i}", f"b{i}") for i in range(6)]))
        ids = [j.id for j in w.jobs]
        assert running(engine) == set(ids[:4])
        await settle(engine, ex, ids[1])
        assert running(engine) == {ids[0], ids[2], ids[3], ids[4]}
        for job_id in [ids[0], ids[2], ids[3], ids[4]]:
            await settle(engine, ex, job_id)
        assert running(engine) == {ids[5]}
        await settle(engine, ex, ids[5])
        assert engine.is_idle()


# ---- R3: active tenants ----------------------------------------------------------------------
async def test_fourth_tenant_waits_through_the_gap_in_a_serial_branch(tmp_path, ex):
    async with make(tmp_path, ex, max_workers=8, max_active_users=3) as engine:
        a = engine.submit("a", wf("w", ("j1", "main"), ("j2", "main")))
        engine.submit("b", wf("w", ("j1", "main")))
        engine.submit("c", wf("w", ("j1", "main")))
        d = engine.submit("d", wf("w", ("j1", "main")))
        assert engine.stats().active == ("a", "b", "c")
        assert engine.stats().waiting == ("d",)
        await settle(engine, ex, a.jobs[0].id)  # a's job 1 done, job 2 of the lane now runs
        assert engine.job("a", a.jobs[1].id).state is JobState.RUNNING
        assert engine.stats().waiting == ("d",)
        assert engine.job("d", d.jobs[0].id).state is JobState.PENDING
        await settle(engine, ex, a.jobs[1].id)  # a has finished all its jobs
        assert engine.stats().active == ("b", "c", "d")
        assert engine.job("d", d.jobs[0].id).state is JobState.RUNNING
        for job_id in running(engine):
            await settle(engine, ex, job_id)


async def test_waiting_tenants_admitted_in_arrival_order(tmp_path, ex):
    async with make(tmp_path, ex, max_workers=8, max_active_users=1) as engine:
        events: list[str] = []
        engine.bus.add_listener(
            lambda e: events.append(e.tenant) if isinstance(e, TenantAdmitted) else None
        )
        first = engine.submit("t0", wf("w", ("j", "main")))
        later = [engine.submit(f"t{i}", wf("w", ("j", "main"))) for i in (3, 1, 2)]
        assert engine.stats().waiting == ("t3", "t1", "t2")
        await settle(engine, ex, first.jobs[0].id)
        for w in later:
            assert running(engine) == {w.jobs[0].id}
            await settle(engine, ex, w.jobs[0].id)
        assert events == ["t0", "t3", "t1", "t2"]


async def test_canceling_a_waiting_tenants_jobs_frees_its_place(tmp_path, ex):
    async with make(tmp_path, ex, max_workers=8, max_active_users=1) as engine:
        a = engine.submit("a", wf("w", ("j", "main")))
        b = engine.submit("b", wf("w", ("j", "main"), ("k", "other")))
        c = engine.submit("c", wf("w", ("j", "main")))
        assert engine.stats().waiting == ("b", "c")
        for job in b.jobs:
            engine.cancel("b", job.id)
        assert engine.stats().waiting == ("c",)
        await settle(engine, ex, a.jobs[0].id)
        assert running(engine) == {c.jobs[0].id}
        await settle(engine, ex, c.jobs[0].id)


async def test_canceling_an_active_tenants_pending_jobs_frees_its_slot(tmp_path, ex):
    # One worker: b is admitted (a slot is free) but its job cannot start yet.
    async with make(tmp_path, ex, max_workers=1, max_active_users=2) as engine:
        a = engine.submit("a", wf("w", ("j", "main")))
        b = engine.submit("b", wf("w", ("j", "main")))
        c = engine.submit("c", wf("w", ("j", "main")))
        assert engine.stats().active == ("a", "b")
        assert engine.stats().waiting == ("c",)
        engine.cancel("b", b.jobs[0].id)
        assert engine.stats().active == ("a", "c")
        await settle(engine, ex, a.jobs[0].id)
        assert running(engine) == {c.jobs[0].id}
        await settle(engine, ex, c.jobs[0].id)


# ---- R4: DAG ---------------------------------------------------------------------------------
async def test_dependent_starts_only_after_upstream_succeeded(tmp_path, ex):
    async with make(tmp_path, ex) as engine:
        w = engine.submit("a", wf("w", ("mask", "A"), ("cells", "B", ("mask",))))
        mask, cells = (j.id for j in w.jobs)
        assert running(engine) == {mask}
        await settle(engine, ex, mask)
        assert running(engine) == {cells}
        await settle(engine, ex, cells)
        assert engine.workflow("a", w.workflow.id).state is WorkflowState.SUCCEEDED


async def test_failed_parent_blocks_only_its_dependents_and_retry_unblocks(tmp_path, ex):
    async with make(tmp_path, ex, max_workers=8, max_active_users=1) as engine:
        w = engine.submit(
            "a",
            wf(
                "w",
                ("p", "A"),
                ("child", "A", ("p",)),
                ("grandchild", "B", ("child",)),
                ("sibling", "A"),
                ("other", "C"),
            ),
        )
        p, child, grandchild, sibling, other = (j.id for j in w.jobs)
        await settle(engine, ex, other)
        await settle(engine, ex, p, "fail")
        assert engine.job("a", p).state is JobState.FAILED
        assert engine.job("a", p).error == "synthetic failure"
        assert engine.job("a", child).blocked and engine.job("a", grandchild).blocked
        assert running(engine) == {sibling}  # R5: the lane goes on past the failure
        await settle(engine, ex, sibling)
        # Only blocked jobs left: they hold no tenant slot, so a waiting tenant gets in.
        assert engine.stats().active == ()
        assert engine.workflow("a", w.workflow.id).state is WorkflowState.FAILED
        z = engine.submit("z", wf("w", ("j", "main")))
        assert running(engine) == {z.jobs[0].id}
        retried = engine.retry("a", p)
        assert retried.attempt == 2 and retried.state is JobState.PENDING
        assert not engine.job("a", child).blocked
        assert engine.stats().waiting == ("a",)  # z holds the only slot
        await settle(engine, ex, z.jobs[0].id)
        for job_id in (p, child, grandchild):
            assert running(engine) == {job_id}
            await settle(engine, ex, job_id)
        assert engine.workflow("a", w.workflow.id).state is WorkflowState.SUCCEEDED


async def test_canceled_upstream_blocks_dependents(tmp_path, ex):
    async with make(tmp_path, ex) as engine:
        w = engine.submit("a", wf("w", ("x", "A"), ("y", "A"), ("z", "B", ("y",))))
        x, y, z = (j.id for j in w.jobs)
        engine.cancel("a", y)
        assert engine.job("a", z).blocked
        await settle(engine, ex, x)
        assert engine.is_idle()
        assert engine.workflow("a", w.workflow.id).state is WorkflowState.CANCELED


async def test_cycles_and_unknown_dependencies_are_rejected(tmp_path, ex):
    async with make(tmp_path, ex) as engine:
        # Each message names the jobs and says the fix (the cycle's read "(x -> y: x depends
        # on y)", a legend whose x and y looked like job names, and neither said what to do).
        with pytest.raises(InvalidRequest, match=r"dependency cycle: a -> c -> b -> a \(") as e:
            engine.submit("t", wf("w", ("a", "m", ("c",)), ("b", "m", ("a",)), ("c", "m", ("b",))))
        assert str(e.value).endswith("remove one of these depends_on")
        with pytest.raises(InvalidRequest, match="depends on unknown job 'nope'"):
            engine.submit("t", wf("w", ("a", "m", ("nope",))))
        with pytest.raises(InvalidRequest, match="used twice in the workflow; give each job its"):
            engine.submit("t", wf("w", ("a", "m"), ("a", "n")))
        assert engine.tenants() == []


async def test_jobs_listed_before_their_dependencies_enter_lanes_after_them(tmp_path, ex):
    async with make(tmp_path, ex) as engine:
        w = engine.submit("t", wf("w", ("late", "m", ("early",)), ("early", "m")))
        early = next(j for j in w.jobs if j.key == "early")
        late = next(j for j in w.jobs if j.key == "late")
        assert early.seq < late.seq
        await settle(engine, ex, early.id)
        await settle(engine, ex, late.id)


# ---- R5: failures are lane-local ---------------------------------------------------------------
async def test_failure_does_not_stop_other_lanes_or_the_next_job(tmp_path, ex):
    async with make(tmp_path, ex) as engine:
        w = engine.submit("t", wf("w", ("a1", "A"), ("a2", "A"), ("b1", "B"), ("b2", "B")))
        a1, a2, b1, b2 = (j.id for j in w.jobs)
        await settle(engine, ex, a1, "fail")
        assert running(engine) == {a2, b1}
        await settle(engine, ex, b1)
        assert running(engine) == {a2, b2}
        await settle(engine, ex, a2)
        await settle(engine, ex, b2)
        retried = engine.retry("t", a1)
        assert retried.seq > engine.job("t", a2).seq  # back of its lane
        await settle(engine, ex, a1)
        assert engine.workflow("t", w.workflow.id).state is WorkflowState.SUCCEEDED


# ---- R6: fairness ----------------------------------------------------------------------------
async def test_tenant_with_many_branches_does_not_take_every_worker(tmp_path, ex):
    async with make(tmp_path, ex, max_workers=4) as engine:
        big = engine.submit("big", wf("w", *[(f"j{i}", f"b{i}") for i in range(50)]))
        # big got all 4 workers while alone; the others are served as workers free up.
        small = engine.submit("small", wf("w", ("x", "A"), ("y", "B"), ("z", "C")))
        tiny = engine.submit("tiny", wf("w", ("x", "A")))
        big_ids = [j.id for j in big.jobs]
        await settle(engine, ex, big_ids[0])
        await settle(engine, ex, big_ids[1])
        await settle(engine, ex, big_ids[2])
        by_tenant = {
            t: sum(1 for j in running(engine) if j.startswith(w.workflow.id))
            for t, w in (("big", big), ("small", small), ("tiny", tiny))
        }
        assert by_tenant == {"big": 2, "small": 1, "tiny": 1}
        for job_id in running(engine) - set(big_ids):
            await settle(engine, ex, job_id)
        # Round-robin continues: small's next lane gets a worker before big's 5th.
        assert sum(1 for j in running(engine) if j.startswith(small.workflow.id)) >= 1


# ---- R7: isolation ---------------------------------------------------------------------------
async def test_another_tenants_ids_behave_like_unknown_ids(tmp_path, ex):
    async with make(tmp_path, ex) as engine:
        a = engine.submit("alice", wf("w", ("j", "main"), ("k", "main")))
        job_id, wf_id = a.jobs[1].id, a.workflow.id
        assert [w.workflow.id for w in engine.workflows("bob")] == []
        for call in (
            lambda: engine.job("bob", job_id),
            lambda: engine.cancel("bob", job_id),
            lambda: engine.retry("bob", job_id),
            lambda: engine.rerun("bob", job_id),
            lambda: engine.timeline("bob", job_id),
            lambda: engine.start("bob", [job_id]),
        ):
            with pytest.raises(NotFound) as err:
                call()
            assert str(err.value) == f"no job {job_id!r} for tenant 'bob'"
        with pytest.raises(NotFound) as err:
            engine.workflow("bob", wf_id)
        assert str(err.value) == f"no workflow {wf_id!r} for tenant 'bob'"
        with pytest.raises(NotFound):
            engine.add_job("bob", wf_id, JobSpec(id="x", type="TISSUE_MASK", slide="s"))
        assert engine.job("alice", job_id).state is JobState.PENDING
        for job_id in (a.jobs[0].id, a.jobs[1].id):
            await settle(engine, ex, job_id)


async def test_bad_tenant_ids_unknown_types_and_bad_params_are_refused(tmp_path, ex):
    async with make(tmp_path, ex) as engine:
        for tenant in ("../etc", "a/b", "", ".hidden"):
            with pytest.raises(InvalidRequest, match=r"tenant .* is not allowed"):
                engine.submit(tenant, wf("w", ("j", "main")))
        spec = WorkflowSpec(name="w", jobs=(JobSpec(id="c", type="SEGMENT_CELLS", slide="s.svs"),))
        with pytest.raises(
            InvalidRequest, match=r"unknown job type 'SEGMENT_CELLS' .*; use one of: TISSUE_MASK"
        ):
            engine.submit("t", spec)
        bad = WorkflowSpec(
            name="w", jobs=(JobSpec(id="j", type="TISSUE_MASK", slide="s", params={"bad": 1}),)
        )
        with pytest.raises(InvalidRequest, match="job 'j': param 'bad' is not allowed"):
            engine.submit("t", bad)
        assert engine.tenants() == []


# ---- R8: event-driven ------------------------------------------------------------------------
async def test_dispatch_is_event_driven_with_no_background_task(tmp_path, ex):
    before = asyncio.all_tasks()
    async with make(tmp_path, ex) as engine:
        assert asyncio.all_tasks() == before  # an idle engine runs no task: no polling loop
        w = engine.submit("t", wf("w", ("a", "main"), ("b", "main")))
        a, b = (j.id for j in w.jobs)
        seen: list[tuple[str, str]] = []
        engine.bus.add_listener(
            lambda e: (
                seen.append((e.job.id, e.job.state)) if isinstance(e, JobStateChanged) else None
            )
        )
        await settle(engine, ex, a)
        # b started in the same synchronous step that recorded a's success: no tick between.
        assert seen[:2] == [(a, JobState.SUCCEEDED), (b, JobState.RUNNING)]
        await settle(engine, ex, b)


# ---- jobs that are created held, then started ------------------------------------------------
async def test_held_jobs_start_with_their_upstream(tmp_path, ex):
    async with make(tmp_path, ex) as engine:
        w = engine.submit("t", wf("w", ("a", "A"), ("b", "B", ("a",))), start=False)
        a, b = (j.id for j in w.jobs)
        assert engine.is_idle() and running(engine) == set()
        engine.start("t", [b])  # starting b starts a, which it needs
        assert running(engine) == {a}
        await settle(engine, ex, a)
        await settle(engine, ex, b)
        added = engine.add_job(
            "t", w.workflow.id, JobSpec(id="c", type="TISSUE_MASK", slide="s", depends_on=("b",))
        )
        assert running(engine) == {added.id}
        await settle(engine, ex, added.id)
