"""One test per engine defect of the third outside audit (issue #15), each failing on the engine
before its fix."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest

from tests.core.crash import snapshot
from tests.core.engine_helpers import job, until
from tests.core.fakes import GatedExecutor
from wsitui.core.engine import Engine, InvalidRequest
from wsitui.core.executor import JobContext
from wsitui.core.records import JobSpec, JobState, WorkflowSpec

pytestmark = pytest.mark.anyio


def wf(name: str, *jobs: JobSpec) -> WorkflowSpec:
    return WorkflowSpec(name=name, jobs=jobs)


# ---- 1: an executor that cancels its own task fails only its own job -------------------------
class SelfCancelling(GatedExecutor):
    async def run(self, ctx: JobContext) -> None:
        if ctx.job.params.get("self_cancel"):
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)
        await super().run(ctx)


async def test_an_executor_cancelling_its_own_task_fails_only_its_job(tmp_path):
    ex = SelfCancelling()
    body_finished = False
    async with Engine(tmp_path / "d", [ex], max_workers=2) as engine:
        good = engine.submit("bob", wf("w", job("y"))).jobs[0].id
        await until(engine, lambda: good in engine._runs)
        bad = engine.submit("alice", wf("w", job("x", self_cancel=True))).jobs[0].id
        await until(engine, lambda: engine._jobs[bad].state is JobState.FAILED)
        assert (engine._jobs[bad].error or "").startswith("CancelledError")
        assert engine._jobs[good].state is JobState.RUNNING  # the other tenant carries on
        ex.release(good)
        await until(engine, engine.is_idle)
        assert engine._jobs[good].state is JobState.SUCCEEDED
        body_finished = True
    assert body_finished


# ---- 8: a kill while several jobs run marks none of them as poison ----------------------------
async def test_deaths_with_several_jobs_running_make_no_poison_job(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=2) as engine:
        w = engine.submit("t", wf("w", job("x", branch="p"), job("y", branch="q")))
        ids = [j.id for j in w.jobs]
        await until(engine, lambda: all(j in engine._runs for j in ids))
        first = snapshot(engine, tmp_path / "crash1")  # SIGKILLed from outside, twice
    async with Engine(first, [ex], max_workers=2) as engine:
        await until(engine, lambda: all(j in engine._runs for j in ids))
        second = snapshot(engine, tmp_path / "crash2")
    async with Engine(second, [ex], max_workers=2) as engine:
        assert [engine._jobs[j].state for j in ids] == [JobState.RUNNING] * 2  # resumed again
        for j in ids:
            ex.release(j)
        await until(engine, engine.is_idle)
        assert [engine._jobs[j].state for j in ids] == [JobState.SUCCEEDED] * 2


async def test_a_stored_job_without_an_executor_fails_in_one_line(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex]) as engine:
        x = engine.submit("t", wf("w", job("x"))).jobs[0].id
        await until(engine, lambda: x in engine._runs)
        crashed = snapshot(engine, tmp_path / "crash")
        ex.release(x)
    other = GatedExecutor("SEGMENT_CELLS")  # reopened without a TISSUE_MASK executor
    async with Engine(crashed, [other]) as engine:
        await until(engine, lambda: engine._jobs[x].state is JobState.FAILED)
        error = engine._jobs[x].error or ""
        assert "no executor" in error and "\n" not in error
        y = (
            engine.submit(
                "t",
                WorkflowSpec(name="v", jobs=(JobSpec(id="y", type="SEGMENT_CELLS", slide="s"),)),
            )
            .jobs[0]
            .id
        )
        other.release(y)
        await until(engine, engine.is_idle)  # the engine goes on
        assert engine._jobs[y].state is JobState.SUCCEEDED


# ---- #21.8: `wsitui status` reads committed progress: it is committed, at a bounded rate -----
async def test_running_progress_is_committed_for_status_readers(tmp_path):
    from wsitui.core.store import Store

    ex = GatedExecutor()  # reports 0/10 as it starts
    async with Engine(tmp_path / "d", [ex]) as engine:
        x = engine.submit("t", wf("w", job("x"))).jobs[0].id
        await until(engine, lambda: engine._jobs[x].tiles_total == 10)
        engine._runs[x].ctx.set_stage("tiling")  # type: ignore[union-attr]
        reader = Store(tmp_path / "d" / "state.db", readonly=True)
        try:
            (row,) = [j for j in reader.jobs() if j.id == x]
        finally:
            reader.close()
        assert (row.state, row.tiles_total, row.stage) == (JobState.RUNNING, 10, "tiling")
        ex.release(x)
        await until(engine, engine.is_idle)


# ---- 5: a stored job that needs a resource this engine lacks fails at once -------------------
async def test_stored_gpu_jobs_reopened_without_a_gpu_fail_at_once(tmp_path):
    from tests.core.test_engine_defects import Gpu

    cpu, gpu = GatedExecutor(), Gpu()
    async with Engine(tmp_path / "d", [cpu, gpu], max_workers=2) as engine:
        cells = [JobSpec(id=f"g{i}", type="SEGMENT_CELLS", slide="s", branch="g") for i in (0, 1)]
        w = engine.submit("t", wf("w", *cells, job("after", deps=("g1",))))
        g0, g1, after = (j.id for j in w.jobs)
        await until(engine, lambda: g0 in engine._runs)
        crashed = snapshot(engine, tmp_path / "crash")  # g0 RUNNING, g1 queued
        gpu.gates.setdefault(g0, anyio.Event()).set()
    async with Engine(crashed, [cpu, Gpu()], resources={"gpu": 0}) as engine:
        for job_id in (g0, g1):
            failed = engine._jobs[job_id]
            assert failed.state is JobState.FAILED
            assert "needs gpu=1 but this engine has gpu=0" in (failed.error or "")
            assert "\n" not in (failed.error or "")
        assert engine._jobs[after].blocked
        assert engine.is_idle() and engine.stats().active == ()  # no slot held by them
        with pytest.raises(InvalidRequest, match="cannot run on this machine"):
            engine.retry("t", g1)


# ---- 6: an abandoned GPU run keeps the GPU until its thread returns ---------------------------
class StuckGpu(GatedExecutor):
    """A GPU job whose thread ignores cancel until the test lets it go."""

    def __init__(self) -> None:
        super().__init__("SEGMENT_CELLS")
        self.unblock = threading.Event()

    def resources(self, params: object) -> dict[str, int]:
        return {"gpu": 1}

    def capacity(self) -> dict[str, int]:
        return {"gpu": 1}

    async def run(self, ctx: JobContext) -> None:
        self.started.append(ctx.job.id)
        if ctx.job.key == "stuck":
            await ctx.to_thread(self.unblock.wait, 60)
        else:
            await super().run(ctx)


async def test_an_abandoned_gpu_run_keeps_the_gpu_until_its_thread_returns(tmp_path):
    ex = StuckGpu()
    async with Engine(tmp_path / "d", [ex], max_workers=2, cancel_grace=0.1) as engine:
        specs = [JobSpec(id=k, type="SEGMENT_CELLS", slide="s", branch=k) for k in ("stuck", "n")]
        stuck, nxt = (j.id for j in engine.submit("t", wf("w", *specs)).jobs)
        await until(engine, lambda: stuck in engine._runs)
        engine.cancel("t", stuck)
        await until(engine, lambda: engine._jobs[stuck].state is JobState.CANCELED)
        # Its worker is free but its thread still runs on the GPU: the next GPU job waits.
        assert engine._jobs[nxt].state is JobState.PENDING and nxt not in ex.started
        assert engine.stats().resources == {"gpu": (1, 1)}
        ex.unblock.set()  # the thread returns: the GPU is free
        await until(engine, lambda: nxt in engine._runs)
        ex.release(nxt)
        await until(engine, engine.is_idle)
        assert engine.stats().resources == {"gpu": (0, 1)}


async def test_a_tenant_waiting_only_for_the_gpu_gives_its_slot_up_through_the_engine(tmp_path):
    from tests.core.oracle import check, read_events
    from tests.core.test_engine_defects import Gpu
    from wsitui.core.eventlog import JsonlEventLog

    cpu, gpu = GatedExecutor(), Gpu()
    log = JsonlEventLog(tmp_path / "events.jsonl")
    engine = Engine(tmp_path / "d", [cpu, gpu], max_workers=4, max_active_users=2)
    engine.bus.add_listener(log)
    cells = WorkflowSpec(name="w", jobs=(JobSpec(id="g", type="SEGMENT_CELLS", slide="s"),))
    async with engine:
        a = engine.submit("A", cells).jobs[0].id
        await until(engine, lambda: a in engine._runs)
        b = engine.submit("B", cells).jobs[0].id  # B is admitted, but only waits for the GPU
        c = engine.submit("C", wf("w", job("c"))).jobs[0].id
        await until(engine, lambda: c in engine._runs)  # C's CPU job need not wait
        assert engine.stats().active == ("A", "C") and engine.stats().waiting == ("B",)
        gpu.gates.setdefault(a, anyio.Event()).set()  # A is done: B, first in line, gets in
        await until(engine, lambda: b in engine._runs)
        gpu.gates.setdefault(b, anyio.Event()).set()
        cpu.release(c)
        await until(engine, engine.is_idle)
    log.close()
    oracle = check(read_events([tmp_path / "events.jsonl"]), max_workers=4, max_active_users=2)
    assert oracle.violations == []
