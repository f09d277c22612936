"""Scheduling scenarios from the outside: tenants, resources and restarts, each a case the
rules (rules.py R1-R9) decide and a user can observe in the order jobs start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from tests.core.crash import snapshot, snapshot_every_commit
from tests.core.engine_helpers import until
from tests.core.fakes import GatedExecutor, GatedGpu
from wsitui.core.engine import Engine
from wsitui.core.events import TenantAdmitted
from wsitui.core.records import JobSpec, JobState, WorkflowSpec

pytestmark = pytest.mark.anyio


def cpu(key: str, branch: str = "main", deps: tuple[str, ...] = ()) -> JobSpec:
    return JobSpec(id=key, type="TISSUE_MASK", slide="s.svs", branch=branch, depends_on=deps)


def gpu(key: str, branch: str = "g") -> JobSpec:
    return JobSpec(id=key, type="SEGMENT_CELLS", slide="s.svs", branch=branch)


def wf(name: str, *jobs: JobSpec) -> WorkflowSpec:
    return WorkflowSpec(name=name, jobs=jobs)


async def drain(engine: Engine, executors: list[GatedExecutor]) -> list[str]:
    """Release every job as it starts, one start at a time, until nothing can run; returns
    the order in which jobs started."""
    order: list[str] = []
    with anyio.fail_after(30):
        while not engine.is_idle():
            fresh = [j for j in engine._runs if j not in order]
            if not fresh:
                await engine.wait_until(lambda: bool(set(engine._runs) - set(order)))
                continue
            for job_id in fresh:
                order.append(job_id)
                for ex in executors:
                    ex.release(job_id)
            await engine.wait_until(_none_running(engine, fresh))
    return order


def _none_running(engine: Engine, job_ids: list[str]) -> Callable[[], bool]:
    return lambda: all(j not in engine._runs for j in job_ids)


# ---- R6 per resource class survives a restart ------------------------------------------------
async def test_a_restart_keeps_the_gpu_fair_share_order(tmp_path: Path):
    """A was admitted before B but was served the GPU last: the next GPU start is B's, before
    and after a crash at any commit (per-class service is persisted with the start)."""
    c_ex, g_ex = GatedExecutor(), GatedGpu()
    kw = {"max_workers": 2}
    async with Engine(tmp_path / "d", [c_ex, g_ex], **kw) as engine:
        c = engine.submit("A", wf("cpu", cpu("c"))).jobs[0].id  # A is admitted first
        b1, b2 = (j.id for j in engine.submit("B", wf("gb", gpu("b1"), gpu("b2"))).jobs)
        a1, a2 = (j.id for j in engine.submit("A", wf("ga", gpu("a1"), gpu("a2"))).jobs)
        await until(engine, lambda: b1 in engine._runs)
        g_ex.release(b1)
        await until(engine, lambda: a1 in engine._runs)  # A never had the GPU: A goes
        with snapshot_every_commit(engine, tmp_path / "copies") as copies:
            g_ex.release(a1)  # A had it last: B goes next
            await until(engine, lambda: b2 in engine._runs)
        rest = await drain(engine, [c_ex, g_ex])
    assert [j for j in rest if j in (a2, b2)] == [b2, a2]
    assert copies
    for copy in copies:
        c2, g2 = GatedExecutor(), GatedGpu()
        async with Engine(copy, [c2, g2], **kw) as engine:
            order = await drain(engine, [c2, g2])
            assert engine.job("A", c).state is JobState.SUCCEEDED
        assert [j for j in order if j in (a2, b2)] == [b2, a2], copy.name


# ---- a restart continues what was running first ----------------------------------------------
async def test_jobs_running_at_a_crash_start_again_before_any_other(tmp_path: Path):
    """A's job ran when the process died; B's waited for the one worker. B was never served,
    so by R6 alone B would go first after the restart, and A's half-done job would wait."""
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=1) as engine:
        a1 = engine.submit("A", wf("a", cpu("a1"))).jobs[0].id
        b1 = engine.submit("B", wf("b", cpu("b1"))).jobs[0].id
        await until(engine, lambda: a1 in engine._runs)
        crashed = snapshot(engine, tmp_path / "crashed")
        assert await drain(engine, [ex]) == [a1, b1]
    ex2 = GatedExecutor()
    async with Engine(crashed, [ex2], max_workers=1) as engine:
        assert await drain(engine, [ex2]) == [a1, b1]


async def test_fewer_workers_after_a_restart_resume_the_oldest_running_jobs_only(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=3) as engine:
        ids = [engine.submit(t, wf(t, cpu("x"), cpu("y"))).jobs[0].id for t in "ABC"]
        await until(engine, lambda: len(engine._runs) == 3)
        crashed = snapshot(engine, tmp_path / "crashed")
        for job_id in ids:
            ex.release(job_id)
        await drain(engine, [ex])
    ex2 = GatedExecutor()
    async with Engine(crashed, [ex2], max_workers=1) as engine:
        running: list[int] = []
        engine.bus.add_listener(lambda _e: running.append(engine.scheduler.running))
        order = await drain(engine, [ex2])
        assert order[:3] == ids  # the interrupted ones first, in their start order
        assert len(order) == 6
        assert max(running, default=0) <= 1  # the new bound holds from the first start


# ---- R3: a waiting tenant is admitted exactly when the last live job of an active one ends --
def admissions(engine: Engine) -> list[str]:
    out: list[str] = []
    engine.bus.add_listener(
        lambda e: out.append(e.tenant) if isinstance(e, TenantAdmitted) else None
    )
    return out


@pytest.mark.parametrize("end", ["ok", "fail", "cancel"])
async def test_the_next_tenant_is_admitted_when_the_last_job_ends_however_it_ends(
    tmp_path: Path, end: str
):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=4, max_active_users=1) as engine:
        admitted = admissions(engine)
        a1, a2 = (j.id for j in engine.submit("A", wf("a", cpu("a1"), cpu("a2"))).jobs)
        b1 = engine.submit("B", wf("b", cpu("b1"))).jobs[0].id
        c1 = engine.submit("C", wf("c", cpu("c1"))).jobs[0].id
        ex.release(a1)
        await until(engine, lambda: a2 in engine._runs)  # the gap between A's two jobs
        assert engine.stats().active == ("A",) and engine.stats().waiting == ("B", "C")
        if end == "cancel":
            engine.cancel("A", a2)  # running: it stops at its next tile
        else:
            ex.release(a2, end)
        await until(engine, lambda: b1 in engine._runs)
        assert engine.stats().active == ("B",) and engine.stats().waiting == ("C",)
        assert c1 not in engine._runs
        if end != "ok":  # the retry is new live work: A waits behind C, in arrival order
            engine.retry("A", a2)
            assert engine.stats().waiting == ("C", "A")
        assert await drain(engine, [ex]) == [b1, c1, *([a2] if end != "ok" else [])]
        assert admitted == ["A", "B", "C", *(["A"] if end != "ok" else [])]


async def test_retrying_a_failed_job_while_another_job_runs_keeps_the_slot(tmp_path: Path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=4, max_active_users=1) as engine:
        a1, a2 = (j.id for j in engine.submit("A", wf("a", cpu("a1"), cpu("a2", "x"))).jobs)
        b1 = engine.submit("B", wf("b", cpu("b1"))).jobs[0].id
        await until(engine, lambda: {a1, a2} <= set(engine._runs))
        ex.release(a1, "fail")
        await until(engine, lambda: engine._jobs[a1].state is JobState.FAILED)
        engine.retry("A", a1)  # A still runs a2: it never left, B still waits
        assert engine.stats().active == ("A",) and engine.stats().waiting == ("B",)
        order = await drain(engine, [ex])
        assert order.index(b1) > order.index(a1)


async def test_a_tenant_whose_jobs_all_wait_on_a_held_upstream_holds_no_slot(tmp_path: Path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=4, max_active_users=1) as engine:
        admitted = admissions(engine)
        w = engine.submit("A", wf("a", cpu("x"), cpu("y", "y", deps=("x",))), start=False)
        x, y = (j.id for j in w.jobs)
        engine.cancel("A", y)
        engine.retry("A", y)  # queued, but parked behind its held upstream x (R4)
        assert engine.stats().active == () and engine.stats().waiting == ()
        b1 = engine.submit("B", wf("b", cpu("b1"))).jobs[0].id
        assert engine.stats().active == ("B",) and b1 in engine._runs
        engine.start("A", [x])  # now A has live work: it waits for B to finish everything
        assert engine.stats().waiting == ("A",)
        assert await drain(engine, [ex]) == [b1, x, y]
        assert admitted == ["B", "A"]


async def test_canceling_a_waiting_tenants_whole_workflow_keeps_the_others_in_order(
    tmp_path: Path,
):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=4, max_active_users=1) as engine:
        admitted = admissions(engine)
        a1 = engine.submit("A", wf("a", cpu("a1"))).jobs[0].id
        wb = engine.submit("B", wf("b", cpu("b1"), cpu("b2", deps=("b1",)), cpu("b3", "z")))
        c1 = engine.submit("C", wf("c", cpu("c1"))).jobs[0].id
        d1 = engine.submit("D", wf("d", cpu("d1"))).jobs[0].id
        assert engine.stats().waiting == ("B", "C", "D")
        for job in wb.jobs[::-1]:
            if engine._jobs[job.id].state is JobState.PENDING:
                engine.cancel("B", job.id)
        assert engine.stats().waiting == ("C", "D")
        assert {j.state for j in engine.workflow("B", wb.workflow.id).jobs} == {JobState.CANCELED}
        assert await drain(engine, [ex]) == [a1, c1, d1]
        assert admitted == ["A", "C", "D"]


# ---- restarts: the waiting order and the running jobs continue --------------------------------
@pytest.mark.parametrize("how", ["crash", "clean stop"])
async def test_a_restart_keeps_waiting_tenants_in_arrival_order_and_resumes_first(
    tmp_path: Path, how: str
):
    """One worker, one slot: A is active with a running job and a queued one; D, B, C wait in
    that order. After the restart A's running job goes on first, then A's next, then D, B, C:
    as the stopped process would have done."""
    ex = GatedExecutor()
    kw = {"max_workers": 1, "max_active_users": 1}
    async with Engine(tmp_path / "d", [ex], **kw) as engine:
        a1, a2 = (j.id for j in engine.submit("A", wf("a", cpu("a1"), cpu("a2", "x"))).jobs)
        rest = [engine.submit(t, wf(t, cpu("j"))).jobs[0].id for t in "DBC"]
        await until(engine, lambda: a1 in engine._runs)
        crashed = snapshot(engine, tmp_path / "crashed")
    data = crashed if how == "crash" else tmp_path / "d"
    ex2 = GatedExecutor()
    async with Engine(data, [ex2], **kw) as engine:
        admitted = admissions(engine)
        assert engine.stats().active == ("A",)
        assert engine.stats().waiting == ("D", "B", "C")
        assert await drain(engine, [ex2]) == [a1, a2, *rest]
        assert admitted == ["D", "B", "C"]


async def test_fewer_active_users_after_a_restart_keep_the_first_admitted(tmp_path: Path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=1, max_active_users=3) as engine:
        ids = [engine.submit(t, wf(t, cpu("j"))).jobs[0].id for t in "ABCD"]
        await until(engine, lambda: ids[0] in engine._runs)
        assert engine.stats().active == ("A", "B", "C")
        crashed = snapshot(engine, tmp_path / "crashed")
    ex2 = GatedExecutor()
    async with Engine(crashed, [ex2], max_workers=1, max_active_users=1) as engine:
        assert engine.stats().active == ("A",)
        assert engine.stats().waiting == ("B", "C", "D")  # those admitted before D stay ahead
        assert await drain(engine, [ex2]) == ids


@pytest.mark.parametrize("how", ["crash", "clean stop"])
async def test_a_restart_continues_the_running_job_before_a_never_served_tenant(
    tmp_path: Path, how: str
):
    ex = GatedExecutor()
    kw = {"max_workers": 1, "max_active_users": 2}
    async with Engine(tmp_path / "d", [ex], **kw) as engine:
        a1 = engine.submit("A", wf("a", cpu("a1"))).jobs[0].id
        b1 = engine.submit("B", wf("b", cpu("b1"))).jobs[0].id  # active, waits for the worker
        await until(engine, lambda: a1 in engine._runs)
        crashed = snapshot(engine, tmp_path / "crashed")
    data = crashed if how == "crash" else tmp_path / "d"
    ex2 = GatedExecutor()
    async with Engine(data, [ex2], **kw) as engine:
        assert await drain(engine, [ex2]) == [a1, b1]


async def test_fewer_gpus_after_a_restart_resume_the_interrupted_gpu_jobs_in_turn(tmp_path):
    """Two GPU jobs ran at the crash, the restart has one GPU: the second waits for it, and
    still goes before C's GPU job (C was never served the GPU, so R6 alone would pick C)."""
    c_ex, g_ex = GatedExecutor(), GatedGpu()
    async with Engine(tmp_path / "d", [c_ex, g_ex], resources={"gpu": 2}) as engine:
        g1 = engine.submit("A", wf("a", gpu("g1"))).jobs[0].id
        g2 = engine.submit("B", wf("b", gpu("g2"))).jobs[0].id
        g3 = engine.submit("C", wf("c", gpu("g3"))).jobs[0].id
        await until(engine, lambda: {g1, g2} <= set(engine._runs))
        crashed = snapshot(engine, tmp_path / "crashed")
    c2, g2_ex = GatedExecutor(), GatedGpu()
    async with Engine(crashed, [c2, g2_ex], resources={"gpu": 1}) as engine:
        assert set(engine._runs) == {g1}
        assert await drain(engine, [c2, g2_ex]) == [g1, g2, g3]
