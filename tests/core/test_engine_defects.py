"""One test per engine defect found by the outside audit (issue "the spine, hardened"), each
failing on the engine before the fix, plus the planted bugs the suite used to miss."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import anyio
import anyio.to_thread
import pytest

from tests.core.crash import snapshot, snapshot_every_commit
from tests.core.engine_helpers import job, until
from tests.core.fakes import GatedExecutor, LooseParams, SleepExecutor
from wsitui.core.engine import Engine
from wsitui.core.events import JobProgress, JobStateChanged
from wsitui.core.executor import Executor, JobContext
from wsitui.core.records import JobSpec, JobState, WorkflowSpec

pytestmark = pytest.mark.anyio


def wf(name: str, *jobs: JobSpec) -> WorkflowSpec:
    return WorkflowSpec(name=name, jobs=jobs)


async def poll(predicate, seconds: float = 10) -> None:  # type: ignore[no-untyped-def]
    """For facts no engine event announces (a file appearing)."""
    with anyio.fail_after(seconds):
        while not predicate():
            await anyio.sleep(0.01)


def state(engine: Engine, tenant: str, job_id: str) -> JobState:
    return engine.job(tenant, job_id).state


async def drain(engine: Engine, ex: GatedExecutor) -> list[str]:
    """Release every job as it starts until nothing can run; the start order."""
    order: list[str] = []
    with anyio.fail_after(20):
        while not engine.is_idle():
            running = [j for j, r in engine._runs.items() if j not in order]
            if not running:
                await engine.wait_until(lambda: bool(set(engine._runs) - set(order)))
                continue
            for job_id in running:
                order.append(job_id)
                ex.release(job_id)
            await engine.wait_until(_none_running(engine, running))
    return order


def _none_running(engine: Engine, job_ids: list[str]):  # type: ignore[no-untyped-def]
    return lambda: all(j not in engine._runs for j in job_ids)


# ---- 1: a job must never stand in a lane ahead of its held upstream ---------------------------
async def test_retried_dependent_of_a_held_upstream_does_not_deadlock_the_lane(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=2, max_active_users=1) as engine:
        w = engine.submit("alice", wf("w", job("a"), job("b", deps=("a",))), start=False)
        a, b = (j.id for j in w.jobs)
        engine.cancel("alice", b)
        engine.retry("alice", b)  # queued while its upstream is still held
        # b waits on a dependency: it holds no lane position and no tenant slot
        assert engine.stats().active == ()
        assert engine.queue_depths("alice") == {(w.workflow.id, "main"): 0}
        engine.submit("bob", wf("w", job("x")))  # bob gets the only slot meanwhile
        assert engine.stats().active == ("bob",)
        engine.start("alice", [a])
        order = await drain(engine, ex)
    assert order.index(a) < order.index(b)
    assert {state(engine, "alice", j) for j in (a, b)} == {JobState.SUCCEEDED}


async def test_dependent_parked_behind_a_held_upstream_survives_a_restart(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex]) as engine:
        w = engine.submit("alice", wf("w", job("a"), job("b", deps=("a",))), start=False)
        a, b = (j.id for j in w.jobs)
        engine.cancel("alice", b)
        engine.retry("alice", b)
    async with Engine(tmp_path / "d", [ex]) as engine:
        assert engine.stats().active == ()
        engine.start("alice", [a])
        order = await drain(engine, ex)
    assert order == [a, b]


async def test_job_added_with_start_on_after_a_held_job_waits_for_it(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_active_users=1) as engine:
        w = engine.submit("alice", wf("w", job("a")), start=False)
        (a,) = (j.id for j in w.jobs)
        b = engine.add_job("alice", w.workflow.id, job("b", deps=("a",)), start=True).id
        assert engine.stats().active == ()  # holds no tenant slot
        engine.submit("bob", wf("w", job("x")))
        assert engine.stats().active == ("bob",)
        engine.start("alice", [a])
        order = await drain(engine, ex)
    assert order.index(a) < order.index(b)


# ---- 2: which tenants are active, and the waiting order, survive a restart -------------------
def three_workflows(engine: Engine) -> tuple[str, str, str]:
    a1 = engine.submit("A", wf("first", job("j"))).jobs[0].id
    b1 = engine.submit("B", wf("first", job("j"))).jobs[0].id
    a2 = engine.submit("A", wf("second", job("j"))).jobs[0].id
    return a1, b1, a2


async def test_clean_stop_keeps_the_active_tenant_active(tmp_path):
    ex = GatedExecutor()
    kw = {"max_workers": 1, "max_active_users": 1}
    async with Engine(tmp_path / "d", [ex], **kw) as engine:
        a1, b1, a2 = three_workflows(engine)
        ex.release(a1)
        await until(engine, lambda: a2 in engine._runs)
        assert engine.stats().waiting == ("B",)
    async with Engine(tmp_path / "d", [ex], **kw) as engine:  # the same run again
        assert engine.stats().active == ("A",) and engine.stats().waiting == ("B",)
        assert set(engine._runs) == {a2}
        order = await drain(engine, ex)
    assert order == [a2, b1]


async def test_crash_while_the_active_tenant_runs_nothing_keeps_it_active(tmp_path):
    ex = GatedExecutor()
    kw = {"max_workers": 1, "max_active_users": 1}
    async with Engine(tmp_path / "d", [ex], **kw) as engine:
        w = engine.submit("A", wf("w", job("a"), job("b")))
        a, b = (j.id for j in w.jobs)
        b1 = engine.submit("B", wf("w", job("x"))).jobs[0].id
        engine.cancel("A", b)
        ex.release(a, "fail")  # A: a failed, b canceled -> nothing live, A released
        await until(engine, lambda: b1 in engine._runs)
        c = engine.submit("C", wf("w", job("y"))).jobs[0].id
        engine.retry("A", a)  # A waits behind C now
        assert engine.stats().waiting == ("C", "A")
        crashed = snapshot(engine, tmp_path / "crashed")
        ex.release(b1)
        await until(engine, lambda: c in engine._runs)
    async with Engine(crashed, [ex], **kw) as engine:
        assert engine.stats().active == ("B",) and engine.stats().waiting == ("C", "A")
        order = await drain(engine, ex)
    assert order == [b1, c, a]


# ---- 3: a crash between any two commits never deadlocks a lane ------------------------------
async def test_a_crash_after_any_commit_of_a_retry_recovers_and_drains(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=1) as engine:
        w = engine.submit("t", wf("w", job("a"), job("b", deps=("a",)), job("c", "x")))
        a, b, _ = (j.id for j in w.jobs)
        ex.release(a, "fail")
        await until(engine, lambda: engine._jobs[b].blocked)
        with snapshot_every_commit(engine, tmp_path / "copies") as copies:
            engine.retry("t", a)
        assert len(copies) >= 1
    for copy in copies:
        ex2 = GatedExecutor()
        async with Engine(copy, [ex2], max_workers=1) as engine:
            await drain(engine, ex2)
            states = {j.key: j.state for j in engine.workflow("t", w.workflow.id).jobs}
        assert states == {"a": JobState.SUCCEEDED, "b": JobState.SUCCEEDED, "c": states["c"]}


async def test_retry_is_one_transaction(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=1) as engine:
        w = engine.submit("t", wf("w", job("a"), job("b", deps=("a",)), job("c", deps=("b",))))
        a = w.jobs[0].id
        ex.release(a, "fail")
        await until(engine, lambda: engine._jobs[a].state is JobState.FAILED)
        engine._dispatch = lambda: None  # type: ignore[method-assign]  # the command alone
        with snapshot_every_commit(engine, tmp_path / "copies") as copies:
            engine.retry("t", a)
    assert len(copies) == 1


# ---- 4: an executor that raises a BaseException fails only its own job -----------------------
class Raising(Executor):
    job_type = "TISSUE_MASK"
    params_model = LooseParams

    async def run(self, ctx: JobContext) -> None:
        kind = ctx.job.params.get("raise")
        await anyio.sleep(0)
        if kind == "exit":
            raise SystemExit(3)
        if kind == "interrupt":
            raise KeyboardInterrupt
        if kind == "cancelled":
            raise asyncio.CancelledError("stray")
        if kind == "thread-exit":
            await ctx.to_thread(_exit_in_thread)
        await anyio.sleep(0.05)


def _exit_in_thread() -> None:
    raise SystemExit("from a worker thread")


@pytest.mark.parametrize("kind", ["exit", "interrupt", "cancelled", "thread-exit"])
async def test_executor_raising_a_base_exception_fails_only_its_job(tmp_path, kind):
    async with Engine(tmp_path / "d", [Raising()], max_workers=2) as engine:
        bad = engine.submit(
            "alice", wf("w", JobSpec(id="x", type="TISSUE_MASK", slide="s", params={"raise": kind}))
        ).jobs[0]
        good = engine.submit("bob", wf("w", job("y"))).jobs[0]
        await until(engine, engine.is_idle)
        failed = engine.job("alice", bad.id)
        assert failed.state is JobState.FAILED
        name = {
            "exit": "SystemExit",
            "interrupt": "KeyboardInterrupt",
            "cancelled": "CancelledError",
            "thread-exit": "SystemExit",
        }[kind]
        assert (failed.error or "").startswith(name)
        assert "\n" not in (failed.error or "")
        assert engine.job("bob", good.id).state is JobState.SUCCEEDED
        # the engine still takes work
        again = engine.submit("bob", wf("w2", job("z"))).jobs[0]
        await until(engine, lambda: engine.job("bob", again.id).state.terminal)
        assert engine.job("bob", again.id).state is JobState.SUCCEEDED


async def test_a_job_that_crashed_the_process_twice_is_failed_not_resumed(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex]) as engine:
        x = engine.submit("t", wf("w", job("x"))).jobs[0].id
        await until(engine, lambda: x in engine._runs)
        first = snapshot(engine, tmp_path / "crash1")  # the process dies while x runs
        ex.release(x)
    async with Engine(first, [ex]) as engine:
        assert x in engine._runs  # resumed once
        second = snapshot(engine, tmp_path / "crash2")  # ... and dies again, no checkpoint
        ex.release(x)
    async with Engine(second, [ex]) as engine:
        failed = engine.job("t", x)
        assert failed.state is JobState.FAILED and "twice" in (failed.error or "")
        assert x not in engine._runs
        engine.retry("t", x)  # the user can still try again
        assert x in engine._runs
        ex.release(x)
        await until(engine, engine.is_idle)


async def test_a_checkpoint_between_two_crashes_means_the_job_resumes(tmp_path):
    ex = SleepExecutor(tiles=400, tile_seconds=0.01)
    async with Engine(tmp_path / "d", [ex]) as engine:
        x = engine.submit("t", wf("w", job("x"))).jobs[0].id
        await until(engine, lambda: engine._jobs[x].tiles_done >= 2)
        first = snapshot(engine, tmp_path / "crash1")
    async with Engine(first, [ex]) as engine:
        start = engine._jobs[x].tiles_done
        await until(engine, lambda: engine._jobs[x].tiles_done >= start + 2)
        second = snapshot(engine, tmp_path / "crash2")
    async with Engine(second, [ex]) as engine:
        assert engine.job("t", x).state is JobState.RUNNING


# ---- 5: cancel of a running job has a deadline -----------------------------------------------
class Stubborn(Executor):
    """Ignores cancel: sleeps on the loop, or blocks a worker thread, then writes a result."""

    job_type = "TISSUE_MASK"
    params_model = LooseParams

    async def run(self, ctx: JobContext) -> None:
        if ctx.job.params.get("mode") == "thread":
            await anyio.to_thread.run_sync(time.sleep, 2.0)  # not abandonable, on purpose
        else:
            await asyncio.shield(asyncio.sleep(30))
        (ctx.results_dir / "result.txt").write_text("late")


@pytest.mark.parametrize("mode", ["loop", "thread"])
async def test_cancel_of_a_job_that_ignores_it_ends_canceled_after_the_grace(tmp_path, mode):
    ex = Stubborn()
    spec = JobSpec(id="x", type="TISSUE_MASK", slide="s", params={"mode": mode})
    async with Engine(tmp_path / "d", [ex], max_workers=1, cancel_grace=0.3) as engine:
        x = engine.submit("alice", wf("w", spec)).jobs[0]
        y = engine.submit("bob", wf("w", job("y"))).jobs[0]  # waits for the only worker
        await poll(lambda: (engine.results_dir(x) / ".attempt").exists())
        (engine.results_dir(x) / "partial.txt").write_text("half")
        engine.cancel("alice", x.id)
        await until(engine, lambda: engine._jobs[x.id].state.terminal, seconds=5)
        assert engine.job("alice", x.id).state is JobState.CANCELED
        await until(engine, lambda: y.id in engine._runs or engine._jobs[y.id].state.terminal)
        assert not engine.results_dir(x).exists()  # no half outputs left beside a CANCELED
        await until(engine, engine.is_idle, seconds=40)
    assert engine._jobs[x.id].state is JobState.CANCELED  # the late result was discarded


async def test_shutdown_is_bounded_by_the_grace_and_the_job_resumes_later(tmp_path):
    ex = Stubborn()
    spec = JobSpec(id="x", type="TISSUE_MASK", slide="s", params={"mode": "loop"})
    engine = Engine(tmp_path / "d", [ex], cancel_grace=0.3)
    async with engine:
        x = engine.submit("alice", wf("w", spec)).jobs[0].id
        await until(engine, lambda: x in engine._runs)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 10  # not the executor's 30 s
    db = sqlite3.connect(tmp_path / "d" / "state.db")
    assert db.execute("SELECT state FROM jobs").fetchone()[0] == "PENDING"  # resumes next time
    db.close()


# ---- 6: a newly admitted tenant gets the next free worker ------------------------------------
async def test_newly_admitted_tenant_is_served_before_the_first_tenant_again(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=1, max_active_users=3) as engine:
        a = engine.submit("A", wf("w", job("1", "p"), job("2", "q"), job("3", "r")))
        b = engine.submit("B", wf("w", job("1")))
        c = engine.submit("C", wf("w", job("1")))
        order = await drain(engine, ex)
    a1, a2, a3 = (j.id for j in a.jobs)
    assert order == [a1, b.jobs[0].id, c.jobs[0].id, a2, a3]


# ---- 7: progress never goes backwards within an attempt ---------------------------------------
class Forgetful(Executor):
    """Ignores its checkpoint: starts from tile 0 on resume (a lazy executor)."""

    job_type = "TISSUE_MASK"
    params_model = LooseParams

    async def run(self, ctx: JobContext) -> None:
        await ctx.to_thread(self._work, ctx)

    def _work(self, ctx: JobContext) -> None:
        if ctx.job.params.get("honest") and ctx.checkpoint.load() is not None:
            ctx.restart_progress("checkpoint unusable")
        for tile in range(60):
            ctx.check_cancel()
            time.sleep(0.01)
            ctx.checkpoint.save({"tile": tile}, tile + 1)
            ctx.report(tile + 1, 60)


@pytest.mark.parametrize("honest", [False, True])
async def test_progress_within_an_attempt_never_goes_backwards(tmp_path, honest):
    ex = Forgetful()
    seen: list[JobProgress] = []
    spec = JobSpec(id="x", type="TISSUE_MASK", slide="s", params={"honest": honest})
    async with Engine(tmp_path / "d", [ex]) as engine:
        x = engine.submit("t", wf("w", spec)).jobs[0].id
        await until(engine, lambda: engine._jobs[x].tiles_done >= 6)
    async with Engine(tmp_path / "d", [ex]) as engine:
        engine.bus.add_listener(lambda e: seen.append(e) if isinstance(e, JobProgress) else None)
        resumed_at = engine._jobs[x].tiles_done
        await until(engine, engine.is_idle)
    done = [e.job.tiles_done for e in seen if not e.restarted]
    if honest:
        assert seen[0].restarted and seen[0].job.tiles_done == 0  # said so, in the open
        restart = next(i for i, e in enumerate(seen) if e.restarted)
        done = [e.job.tiles_done for e in seen[restart + 1 :]]
    else:
        assert min(done) >= resumed_at
    assert done == sorted(done)


# ---- planted bugs the suite used to miss -----------------------------------------------------
async def test_every_state_event_is_committed_before_it_is_published(tmp_path):
    ex = GatedExecutor()
    seen: list[tuple[str, str, str]] = []
    async with Engine(tmp_path / "d", [ex]) as engine:
        reader = sqlite3.connect(tmp_path / "d" / "state.db")

        def check(event: object) -> None:
            if isinstance(event, JobStateChanged):
                row = reader.execute(
                    "SELECT state, seq FROM jobs WHERE id=?", (event.job.id,)
                ).fetchone()
                seen.append((event.job.id, str(event.job.state), row and row[0]))
                assert row is not None and (row[0], row[1]) == (
                    str(event.job.state),
                    event.job.seq,
                )

        engine.bus.add_listener(check)
        w = engine.submit("t", wf("w", job("a"), job("b", deps=("a",))))
        a = w.jobs[0].id
        ex.release(a, "fail")
        await until(engine, lambda: engine._jobs[a].state.terminal)
        engine.retry("t", a)
        await drain(engine, ex)
        reader.close()
    assert len(seen) >= 8 and all(s[1] == s[2] for s in seen)


async def test_a_job_interrupted_by_a_crash_resumes_at_the_head_of_its_lane(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex]) as engine:
        w = engine.submit("t", wf("w", job("a"), job("b"), job("c")))
        a, b, c = (j.id for j in w.jobs)
        await until(engine, lambda: a in engine._runs)
        crashed = snapshot(engine, tmp_path / "crashed")
        ex.release(a)
        await drain(engine, ex)
    ex2 = GatedExecutor()
    async with Engine(crashed, [ex2]) as engine:
        assert set(engine._runs) == {a}
        assert await drain(engine, ex2) == [a, b, c]


async def test_queue_depths_are_per_tenant_workflow_and_branch(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=1) as engine:
        w1 = engine.submit("alice", wf("w", job("a", "x"), job("b", "x"), job("c", "y")))
        w2 = engine.submit("bob", wf("w", job("a", "x"), job("b", "x")))
        assert engine.queue_depths("alice") == {(w1.workflow.id, "x"): 1, (w1.workflow.id, "y"): 1}
        assert engine.queue_depths("bob") == {(w2.workflow.id, "x"): 2}
        await drain(engine, ex)


# ---- executor contract ------------------------------------------------------------------------
class Gpu(Executor):
    job_type = "SEGMENT_CELLS"
    params_model = LooseParams

    def __init__(self) -> None:
        self.gates: dict[str, anyio.Event] = {}
        self.opened = self.closed = 0

    def resources(self, params: object) -> dict[str, int]:
        return {"gpu": 1}

    def capacity(self) -> dict[str, int]:
        return {"gpu": 1}

    async def open(self) -> None:
        self.opened += 1

    async def close(self) -> None:
        self.closed += 1

    async def run(self, ctx: JobContext) -> None:
        ctx.set_stage("loading model")
        assert [u.job_type for u in ctx.upstream] == ["TISSUE_MASK"] * len(ctx.upstream)
        for up in ctx.upstream:
            assert up.results_dir.is_dir() and up.state is JobState.SUCCEEDED
        await self.gates.setdefault(ctx.job.id, anyio.Event()).wait()


async def test_a_gpu_resource_cap_holds_gpu_jobs_but_not_cpu_jobs(tmp_path):
    cpu, gpu = GatedExecutor(), Gpu()
    async with Engine(tmp_path / "d", [cpu, gpu], max_workers=4) as engine:
        cells = [
            JobSpec(id=f"g{i}", type="SEGMENT_CELLS", slide="s", branch=f"b{i}") for i in range(3)
        ]
        w = engine.submit("t", wf("w", *cells, job("mask", "cpu")))
        g0, g1, g2, mask = (j.id for j in w.jobs)
        await until(engine, lambda: len(engine._runs) == 2)
        assert set(engine._runs) == {g0, mask}  # one GPU job; the CPU job did not wait
        assert engine.stats().resources == {"gpu": (1, 1)}
        await until(engine, lambda: engine._jobs[g0].stage == "loading model")
        gpu.gates.setdefault(g0, anyio.Event()).set()
        await until(engine, lambda: g1 in engine._runs)
        assert g2 not in engine._runs
        for key in (g1, g2):
            gpu.gates.setdefault(key, anyio.Event()).set()
        cpu.release(mask)
        await until(engine, engine.is_idle)
    assert gpu.opened == gpu.closed == 1


async def test_a_job_needing_a_resource_the_engine_lacks_is_refused_at_submission(tmp_path):
    from wsitui.core.engine import InvalidRequest

    async with Engine(tmp_path / "d", [Gpu()], resources={"gpu": 0}) as engine:
        with pytest.raises(InvalidRequest, match=r"needs gpu=1 but this engine has gpu=0"):
            engine.submit("t", wf("w", JobSpec(id="g", type="SEGMENT_CELLS", slide="s")))
        assert engine.tenants() == []


async def test_upstream_results_reach_the_executor(tmp_path):
    cpu, gpu = GatedExecutor(), Gpu()
    async with Engine(tmp_path / "d", [cpu, gpu]) as engine:
        w = engine.submit(
            "t",
            wf(
                "w",
                job("mask"),
                JobSpec(id="cells", type="SEGMENT_CELLS", slide="s", depends_on=("mask",)),
            ),
        )
        mask, cells = (j.id for j in w.jobs)
        cpu.release(mask)
        await until(engine, lambda: engine._jobs[cells].stage == "loading model")
        gpu.gates.setdefault(cells, anyio.Event()).set()
        await until(engine, engine.is_idle)
        assert engine.job("t", cells).state is JobState.SUCCEEDED


async def test_params_are_validated_once_at_submission_with_one_line(tmp_path):
    from pydantic import BaseModel, ConfigDict, field_validator

    from wsitui.core.engine import InvalidRequest

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        tile_size: int = 512

        @field_validator("tile_size")
        @classmethod
        def _even(cls, v: int) -> int:
            if v % 2:
                raise ValueError("tile_size must be even")
            return v

    class Typed(Executor):
        job_type = "TISSUE_MASK"
        params_model = Params

        async def run(self, ctx: JobContext) -> None:
            assert isinstance(ctx.params, Params) and ctx.params.tile_size == 256

    async with Engine(tmp_path / "d", [Typed()]) as engine:
        for params, msg in (
            ({"tile_size": "big"}, "params.tile_size: Input should be a valid integer"),
            # A misspelt param says the fix and the params there are (it said only "Extra
            # inputs are not permitted").
            (
                {"tiel_size": 1},
                "params.tiel_size: not a param of this job type; remove it or check its "
                "spelling (its params: tile_size)",
            ),
            ({"tile_size": 255}, "params.tile_size: tile_size must be even"),  # no "Value error"
        ):
            with pytest.raises(InvalidRequest) as err:
                engine.submit(
                    "t", wf("w", JobSpec(id="m", type="TISSUE_MASK", slide="s", params=params))
                )
            assert str(err.value).startswith(f"job 'm': {msg}")
            assert "\n" not in str(err.value)
        ok = engine.submit(
            "t", wf("w", JobSpec(id="m", type="TISSUE_MASK", slide="s", params={"tile_size": 256}))
        )
        await until(engine, engine.is_idle)
        assert engine.job("t", ok.jobs[0].id).state is JobState.SUCCEEDED


async def test_results_are_kept_on_resume_and_cleared_for_a_new_attempt(tmp_path):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex]) as engine:
        x = engine.submit("t", wf("w", job("x"))).jobs[0]
        await poll(lambda: (engine.results_dir(x) / ".attempt").exists())
        shard = engine.results_dir(x) / "shards" / "0.npz"
        shard.parent.mkdir()
        shard.write_text("tile 0")
    async with Engine(tmp_path / "d", [ex]) as engine:  # resumes: same attempt
        await until(engine, lambda: x.id in engine._runs)
        assert shard.read_text() == "tile 0"
        ex.release(x.id, "fail")
        await until(engine, lambda: engine._jobs[x.id].state.terminal)
        assert shard.exists()  # a failed attempt's outputs stay for the user to inspect
        output = engine.results_dir(x) / "cells.csv"
        output.write_text("attempt 1")
        engine.retry("t", x.id)
        marker = engine.results_dir(x) / ".attempt"
        await poll(lambda: marker.exists() and marker.read_text().strip() == "2")
        assert not output.exists()  # attempt 2 starts without attempt 1's outputs
        assert shard.exists()  # but keeps its shards: the executor reuses the valid ones
        ex.release(x.id)
        await until(engine, engine.is_idle)


def test_store_opens_read_only_without_touching_an_empty_file(tmp_path):
    from wsitui.core.store import Store, StoreError

    db = tmp_path / "state.db"
    db.write_bytes(b"")
    with pytest.raises(StoreError, match="holds no wsitui state"):
        Store(db, readonly=True)
    assert db.read_bytes() == b""


def test_corrupt_rows_are_one_line_store_errors(tmp_path):
    from wsitui.core.store import Store, StoreError

    Store(tmp_path / "state.db").close()
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("INSERT INTO workflows VALUES ('w', 't', 'n', 0)")
    db.execute(
        "INSERT INTO jobs (id, key, workflow_id, tenant, job_type, slide, branch, depends_on, "
        "params, state, created_at) VALUES ('w.a', 'a', 'w', 't', 'TISSUE_MASK', 's', 'main', "
        "'[]', '{bad', 'PENDING', 0)"
    )
    db.commit()
    db.close()
    store = Store(tmp_path / "state.db", readonly=True)
    with pytest.raises(StoreError) as err:
        store.jobs()
    assert "job row 'w.a' is corrupt" in str(err.value) and "\n" not in str(err.value)


def test_a_read_only_state_db_is_refused_at_open(tmp_path):
    import os
    import shutil
    import subprocess

    from wsitui.core.store import Store, StoreError

    db = tmp_path / "state.db"
    Store(db).close()
    before = db.read_bytes()
    if os.geteuid() == 0:  # root ignores file modes: make the file immutable instead
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a read-only file")
        made = subprocess.run(["chattr", "+i", str(db)], capture_output=True)
        if made.returncode:
            pytest.skip(f"chattr +i not supported here: {made.stderr.decode().strip()}")
    else:
        db.chmod(0o444)
    try:
        with pytest.raises(StoreError, match="cannot be opened") as err:
            Store(db)
        assert "\n" not in str(err.value)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db)], check=True)
    assert db.read_bytes() == before


async def test_a_new_workflow_without_jobs_is_published(tmp_path):
    from wsitui.core.events import WorkflowProgress

    seen: list[WorkflowProgress] = []
    async with Engine(tmp_path / "d", [GatedExecutor()]) as engine:
        engine.bus.add_listener(
            lambda e: seen.append(e) if isinstance(e, WorkflowProgress) else None
        )
        w = engine.submit("t", WorkflowSpec(name="empty"), start=False)
    assert [e.workflow.id for e in seen] == [w.workflow.id]


async def test_a_tenant_admitted_at_once_is_never_announced_as_waiting(tmp_path):
    """With a slot free, a submitting tenant is admitted in the same step: no 'waiting for a
    slot' event (logs and faces said so for every single-tenant run). A tenant that does wait
    is announced, with its place in the queue."""
    from wsitui.core.events import TenantAdmitted, TenantWaiting

    seen: list[tuple[str, str, int]] = []

    def listen(event: object) -> None:
        if isinstance(event, TenantWaiting):
            seen.append(("waiting", event.tenant, event.position))
        elif isinstance(event, TenantAdmitted):
            seen.append(("admitted", event.tenant, 0))

    ex = GatedExecutor()
    async with Engine(tmp_path, [ex], max_active_users=1) as engine:
        engine.bus.add_listener(listen)
        a = engine.submit("alice", wf("w", job("a"))).jobs[0].id
        b = engine.submit("bob", wf("w", job("b"))).jobs[0].id
        assert seen == [("admitted", "alice", 0), ("waiting", "bob", 1)]
        ex.release(a)
        await until(engine, lambda: engine.job("bob", b).state is JobState.RUNNING)
        assert seen[2:] == [("admitted", "bob", 0)]
        ex.release(b)
        await until(engine, engine.is_idle)


async def test_is_open_says_when_the_engines_state_can_be_read(tmp_path):
    # A face redrawing after the engine closed (quitting with a job detail open) read the
    # closed store and raised; it can now ask first.
    engine = Engine(tmp_path / "d", [GatedExecutor()])
    assert not engine.is_open
    async with engine:
        assert engine.is_open
        x = engine.submit("t", wf("w", job("x"))).jobs[0]
        assert engine.timeline("t", x.id)
    assert not engine.is_open
    with pytest.raises(RuntimeError, match="engine is not open"):
        engine.timeline("t", x.id)
