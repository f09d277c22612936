"""One command, one transaction (README: Scheduling rules, Durability; rules.py R3): the end of
a tenant's last job, its release and the admission of the next waiting tenant(s) are committed
together, before any of it is published. They were two commits (the release with the end, the
admission in the dispatch after it), so a kill between them left a state.db, and an outside
reader of it, with a tenant slot free while a tenant waited with work, which R3 forbids.

Checked with the crash harness (a copy of state.db after every commit, as a kill there would
leave it), each copy reopened and run to the end, and the strict oracle over the log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from tests.core.crash import snapshot, snapshot_every_commit, snapshot_every_commit_from_open
from tests.core.engine_helpers import job, until
from tests.core.fakes import GatedExecutor, GatedGpu
from tests.core.oracle import check, missing_from_log, read_events
from wsitui.core.engine import Engine
from wsitui.core.eventlog import JsonlEventLog
from wsitui.core.records import JobSpec, WorkflowSpec

pytestmark = pytest.mark.anyio

CAP = 1


def gap(db: Path, cap: int = CAP) -> str | None:
    """What a reader of state.db sees that R3 forbids: a free slot while a tenant waits."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT tenant, status FROM tenants ORDER BY ord").fetchall()
    finally:
        con.close()
    active = [t for t, s in rows if s == "active"]
    waiting = [t for t, s in rows if s == "waiting"]
    if len(active) < cap and waiting:
        return f"active {active}, waiting {waiting} under a cap of {cap}"
    return None


async def drain(engine: Engine, ex: GatedExecutor) -> list[str]:
    """Let every job succeed as it starts, until nothing can run; the start order."""
    order: list[str] = []
    with anyio.fail_after(20):
        while not engine.is_idle():
            fresh = [j for j in engine._runs if j not in order]
            if not fresh:
                await engine.wait_until(
                    lambda: bool(set(engine._runs) - set(order)) or engine.is_idle()
                )
                continue
            for job_id in fresh:
                order.append(job_id)
                ex.release(job_id)
    return order


def attach(engine: Engine, log: Path) -> JsonlEventLog:
    events = JsonlEventLog(log)
    engine.bus.add_listener(events)
    return events


async def test_no_commit_leaves_a_slot_free_while_a_tenant_waits(tmp_path: Path):
    ex, log = GatedExecutor(), tmp_path / "ev.jsonl"
    engine = Engine(tmp_path / "d", [ex], max_workers=2, max_active_users=CAP)
    events = attach(engine, log)
    async with engine:
        with snapshot_every_commit(engine, tmp_path / "copies") as copies:
            # a's second workflow keeps it active after its first ends; b then c wait.
            a1 = engine.submit("a", WorkflowSpec(name="a1", jobs=(job("x"),))).jobs[0].id
            a2 = engine.submit("a", WorkflowSpec(name="a2", jobs=(job("y"),))).jobs[0].id
            engine.submit("b", WorkflowSpec(name="b", jobs=(job("x"), job("z", "B"))))
            engine.submit("c", WorkflowSpec(name="c", jobs=(job("x"),)))
            await until(engine, lambda: {a1, a2} <= set(engine._runs))
            order = await drain(engine, ex)
    events.close()
    assert len(order) == 5 and order[:2] == [a1, a2]
    assert [(c.name, gap(c / "state.db")) for c in copies if gap(c / "state.db")] == []
    assert (
        check(read_events([log]), max_workers=2, max_active_users=CAP, strict=True).violations == []
    )
    # A kill at any of those commits: the reopened engine runs the rest, and no commit of it
    # shows the gap either.
    for copy in copies:
        ex2 = GatedExecutor()
        engine = Engine(copy, [ex2], max_workers=2, max_active_users=CAP)
        with snapshot_every_commit_from_open(engine, tmp_path / f"re{copy.name}") as again:
            async with engine:
                await drain(engine, ex2)
                assert engine.is_idle() and engine._pending_total == 0, copy.name
        assert [(c.name, gap(c / "state.db")) for c in again if gap(c / "state.db")] == []


async def test_a_cancel_of_a_tenants_last_queued_job_admits_the_next_in_its_commit(tmp_path):
    # Not a job's end: a cancel while queued releases the tenant too.
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_workers=1, max_active_users=CAP) as engine:
        a = engine.submit("a", WorkflowSpec(name="a", jobs=(job("x"), job("y", "B"))))
        engine.submit("b", WorkflowSpec(name="b", jobs=(job("x"),)))
        await until(engine, lambda: a.jobs[0].id in engine._runs)
        with snapshot_every_commit(engine, tmp_path / "copies") as copies:
            engine.cancel("a", a.jobs[1].id)
            ex.release(a.jobs[0].id)
            await until(engine, lambda: engine.stats().active == ("b",))
        await drain(engine, ex)
    assert copies
    assert [(c.name, gap(c / "state.db")) for c in copies if gap(c / "state.db")] == []


async def test_a_recovery_that_fails_a_tenants_last_job_admits_the_next_in_its_commit(
    tmp_path: Path,
):
    """A poison job (died alone twice) is failed when the engine opens; its tenant is released
    and the waiting tenant admitted in that same transaction."""
    ex = GatedExecutor()

    def engine(data_dir: Path) -> Engine:
        return Engine(data_dir, [ex], max_workers=1, max_active_users=CAP)

    first = engine(tmp_path / "d")
    async with first:
        x = first.submit("t", WorkflowSpec(name="t", jobs=(job("x"),))).jobs[0].id
        first.submit("u", WorkflowSpec(name="u", jobs=(job("u1"),)))
        await until(first, lambda: x in first._runs)
        crash1 = snapshot(first, tmp_path / "crash1")
        ex.release(x)
    second = engine(crash1)
    async with second:
        await until(second, lambda: x in second._runs)
        crash2 = snapshot(second, tmp_path / "crash2")
        ex.release(x)
    third = engine(crash2)
    with snapshot_every_commit_from_open(third, tmp_path / "copies") as copies:
        async with third:
            await drain(third, ex)
    assert copies
    assert [(c.name, gap(c / "state.db")) for c in copies if gap(c / "state.db")] == []


async def test_a_kill_between_the_commit_and_its_log_lines_leaves_a_log_by_the_rules(
    tmp_path: Path,
):
    """The commit that ends a's last job also releases a and admits c; a kill before its log
    lines were written (the state as committed, the log as written then) and the rerun's
    backfill: the log must still replay by the rules, tenant lines included (it lacked c's
    admission, so c's starts read as starts of a tenant never admitted)."""
    ex, log = GatedExecutor(), tmp_path / "ev.jsonl"
    engine = Engine(tmp_path / "d", [ex], max_workers=2, max_active_users=2)
    events = attach(engine, log)
    cuts: list[tuple[Path, bytes]] = []
    async with engine:
        a1 = engine.submit("a", WorkflowSpec(name="a", jobs=(job("a1"),))).jobs[0].id
        b = engine.submit("b", WorkflowSpec(name="b", jobs=(job("b1"), job("b2")))).jobs
        engine.submit("c", WorkflowSpec(name="c", jobs=(job("c1"),)))
        await until(engine, lambda: {a1, b[0].id} <= set(engine._runs))
        apply = engine.store.apply

        def apply_and_copy(*args: object, **kwargs: object) -> None:
            apply(*args, **kwargs)  # type: ignore[arg-type]
            copy = snapshot(engine, tmp_path / f"copy{len(cuts)}")
            cuts.append((copy, log.read_bytes()))

        engine.store.apply = apply_and_copy  # type: ignore[method-assign]
        ex.release(a1)  # a's last job: a released, c admitted, in one commit
        await until(engine, lambda: engine.stats().active == ("b", "c"))
        engine.store.apply = apply  # type: ignore[method-assign]
        await drain(engine, ex)
    events.close()
    assert cuts
    for copy, written in cuts:
        cut = copy / "ev.jsonl"
        cut.write_bytes(written)
        ex2 = GatedExecutor()
        again = Engine(copy, [ex2], max_workers=2, max_active_users=2)
        events = attach(again, cut)
        again.on_open.append(events.backfill)
        async with again:
            await drain(again, ex2)
        events.close()
        replay = list(read_events([cut]))
        oracle = check(replay, max_workers=2, max_active_users=2, strict=True)
        assert oracle.violations == [], copy.name
        assert missing_from_log(replay, copy / "state.db") == [], copy.name


async def test_a_restart_admits_after_its_resumed_jobs_take_their_resources(tmp_path: Path):
    """Recovery's commit admits waiting tenants before its interrupted jobs start again: the GPU
    the resumed GPU job will take counts as taken, so the first waiting tenant that can start
    is admitted (a CPU tenant), not a GPU one that would give its slot back at once (reviewer,
    2026-12-06: `tenant_admitted c`, `tenant_released c yielded`, `tenant_admitted d`)."""

    def gpu_job(key: str) -> JobSpec:
        return JobSpec(id=key, type="SEGMENT_CELLS", slide="s.svs", branch="main")

    cpu, gpu = GatedExecutor(), GatedGpu()
    engine = Engine(tmp_path / "A", [cpu, gpu], max_workers=3, max_active_users=2)
    async with engine:
        a1 = engine.submit("a", WorkflowSpec(name="w", jobs=(gpu_job("a1"),))).jobs[0].id
        b1 = engine.submit("b", WorkflowSpec(name="w", jobs=(job("b1"),))).jobs[0].id
        engine.submit("c", WorkflowSpec(name="w", jobs=(gpu_job("c1"),)))
        engine.submit("d", WorkflowSpec(name="w", jobs=(job("d1"),)))
        await until(engine, lambda: {a1, b1} <= set(engine._runs))
        copy = snapshot(engine, tmp_path / "copy")  # a kill while a and b run, c and d wait
        cpu.release(b1)
        gpu.release(a1)
    events: list[dict] = []
    again = Engine(copy, [GatedExecutor(), GatedGpu()], max_workers=3, max_active_users=3)
    again.bus.add_listener(lambda e: events.append(e.to_json()))
    async with again:
        await until(again, lambda: len(again._runs) >= 2)
    tenant_lines = [(e["event"], e["tenant"]) for e in events if e["event"].startswith("tenant_")]
    assert tenant_lines[0] == ("tenant_admitted", "d"), tenant_lines
    assert not [e for e in events if e["event"] == "tenant_released" and e.get("yielded")]
