"""Scheduling scenarios, round 4, through the real `wsitui run` (real TISSUE_MASK jobs on a small
generated slide) and the strict oracle, for families not covered before: a tenant with work in
several workflows of several configs (released only after every job of all of them ended);
a workflow skipped, or already done, when a config is run again (it brings its tenant no slot);
two `wsitui run` processes on one data dir (the second is refused in one line and touches
nothing); the tenant cap changed between a clean stop (SIGTERM) and the restart while tenants
wait; and, on the engine (what the TUI calls: the CLI has no cancel or hold command), a waiting
tenant that cancels part of its work, or the job its other work needs (README: Scheduling
rules, Commands, Machine-readable output)."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import anyio
import pytest

from tests.core.oracle import check, read_events
from tests.headless.helpers import wsitui
from tests.scenarios.test_cli_tenant_queue import (
    Workflow,
    _popen,
    _wait_for_log,
    admitted,
    assert_by_the_rules,
    one,
    rerun_under_new_cap,
    starts,
    tenant_rows,
    write_config,
)
from tests.scenarios.test_cli_tenant_queue import paths as paths  # the fixture


def tenant_events(events: list[dict]) -> list[tuple[str, str]]:
    return [
        (e["event"].removeprefix("tenant_"), e["tenant"])
        for e in events
        if e["event"] in ("tenant_admitted", "tenant_released")
    ]


def job_states(db: Path) -> dict[str, str]:
    con = sqlite3.connect(db)
    try:
        return {f"{t}/{k}": s for t, k, s in con.execute("SELECT tenant, key, state FROM jobs")}
    finally:
        con.close()


# ---- several workflows of several configs --------------------------------------------------
def test_a_tenant_with_work_in_workflows_of_two_configs_is_released_after_all_of_it(
    tmp_path: Path, paths: dict[str, Path]
):
    """Config 1 gives ann two workflows (two lanes in w1, one in w2) and bob one; one slot. It is
    killed after ann's first success; config 2 brings ann a third workflow and cal one. ann
    holds her slot through all three (admitted once), bob and cal wait for it, in order."""
    first: list[Workflow] = [
        ("ann", "w1", [one("a1", "A"), one("a2", "A"), one("a3", "B", ["a1"])]),
        ("bob", "w1", [one("b1")]),
        ("ann", "w2", [one("a4")]),
    ]
    cfg = write_config(tmp_path, paths, first, workers=2, users=1)
    db, log = tmp_path / "data" / "state.db", tmp_path / "ev.jsonl"
    proc = _popen(cfg, tmp_path)
    _wait_for_log(log, proc, 1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert tenant_rows(db) == [("ann", "active"), ("bob", "waiting")]
    logged = len(list(read_events([log])))

    second: list[Workflow] = [("cal", "w1", [one("c1")]), ("ann", "w3", [one("a5")])]
    cfg = write_config(tmp_path, paths, second, workers=2, users=1, name="second.toml")
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    events = list(read_events([log]))
    assert_by_the_rules(events, db, workers=2, users=1)
    assert tenant_events(events) == [
        ("admitted", "ann"),
        ("released", "ann"),  # only after a1-a5 all ended, in three workflows of two configs
        ("admitted", "bob"),
        ("released", "bob"),
        ("admitted", "cal"),
        ("released", "cal"),
    ]
    ann_ends = [
        n
        for n, e in enumerate(events)
        if e["event"] == "job_state" and e["tenant"] == "ann" and e["state"] == "SUCCEEDED"
    ]
    released = events.index(
        next(e for e in events if e["event"] == "tenant_released" and e["tenant"] == "ann")
    )
    assert len(ann_ends) == 5 and released > max(ann_ends)
    assert [s for s in starts(events[logged:]) if not s.startswith("ann")] == ["bob/b1", "cal/c1"]
    assert set(job_states(db).values()) == {"SUCCEEDED"} and len(job_states(db)) == 7
    assert tenant_rows(db) == []


# ---- skipped or already done at submit -----------------------------------------------------
def test_a_skipped_or_already_done_workflow_brings_its_tenant_no_slot(
    tmp_path: Path, paths: dict[str, Path]
):
    """Run 1 finishes ann/w1 and hal/w1. Run 2 (one slot) lists hal/w1 changed (skipped: its
    stored twin no longer matches) and ann/w1 as it was (done: nothing to run) before bob's and
    cat's new work: neither ann nor hal is admitted, bob goes in at once, then cat."""
    first: list[Workflow] = [("ann", "w1", [one("a1")]), ("hal", "w1", [one("h1")])]
    cfg = write_config(tmp_path, paths, first, workers=2, users=1)
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    log, db = tmp_path / "ev.jsonl", tmp_path / "data" / "state.db"
    logged = len(list(read_events([log])))
    second: list[Workflow] = [
        ("hal", "w1", [one("h1", "X")]),  # another branch: skipped
        first[0],
        ("bob", "w1", [one("b1"), one("b2", "B")]),
        ("cat", "w1", [one("c1")]),
    ]
    cfg = write_config(tmp_path, paths, second, workers=2, users=1)
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 1, out.stderr  # a skipped workflow: exit 1
    assert "workflows[0] (hal/w1) skipped" in out.stdout + out.stderr
    events = list(read_events([log]))
    assert_by_the_rules(events, db, workers=2, users=1)
    assert tenant_events(events[logged:]) == [
        ("admitted", "bob"),
        ("released", "bob"),
        ("admitted", "cat"),
        ("released", "cat"),
    ]
    assert sorted(starts(events[logged:])) == ["bob/b1", "bob/b2", "cat/c1"]
    assert tenant_rows(db) == []


# ---- two processes on one data dir ---------------------------------------------------------
def test_a_second_run_on_a_data_dir_in_use_is_refused_and_touches_nothing(
    tmp_path: Path, paths: dict[str, Path]
):
    """While a `wsitui run` works through waiting tenants (paused with SIGSTOP, so it is
    surely still there and writes nothing meanwhile), the same command again (same data dir,
    same event log) and another config on it are refused in one line, exit 2: not a byte of
    the log or the data dir changes, and the first run, continued, ends by the rules."""
    workflows: list[Workflow] = [
        (t, "w", [one(f"{t}1"), one(f"{t}2"), one(f"{t}3")]) for t in ("ann", "bob", "cat")
    ]
    cfg = write_config(tmp_path, paths, workflows, workers=1, users=1)
    other = write_config(
        tmp_path, paths, [("dan", "w", [one("d1")])], workers=1, users=1, name="other.toml"
    )
    log, data = tmp_path / "ev.jsonl", tmp_path / "data"

    def files() -> dict[str, bytes]:
        return {
            str(f.relative_to(tmp_path)): f.read_bytes()
            for f in [log, *data.rglob("*")]
            if f.is_file()
        }

    proc = _popen(cfg, tmp_path)
    try:
        _wait_for_log(log, proc, 1)
        os.kill(proc.pid, signal.SIGSTOP)
        before = files()
        for config in (cfg, other):
            out = wsitui("run", config, "--quiet", cwd=tmp_path, timeout=60)
            assert out.returncode == 2, out.stderr
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1 and "in use by another wsitui process" in lines[0], out.stderr
            assert f"pid {proc.pid}" in lines[0] and "Traceback" not in out.stdout + out.stderr
            assert files() == before
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
    events = list(read_events([log]))
    db = data / "state.db"
    assert_by_the_rules(events, db, workers=1, users=1)
    assert admitted(events) == ["ann", "bob", "cat"]
    assert "dan" not in {t.split("/")[0] for t in job_states(db)}
    assert len(job_states(db)) == 9 and set(job_states(db).values()) == {"SUCCEEDED"}


# ---- another tenant cap after a clean stop -------------------------------------------------
@pytest.mark.parametrize("users", [(1, 3), (3, 1)], ids=["more-slots", "fewer-slots"])
def test_a_clean_stop_then_another_tenant_cap_keeps_the_waiting_order(
    tmp_path: Path, paths: dict[str, Path], users: tuple[int, int]
):
    """SIGTERM (running jobs stop at their next tile and resume at the restart) while two or
    four tenants wait; the restart has another max_active_users. More slots: the first waiting
    go in, in their order; fewer: those admitted first keep theirs, the others wait first in
    line (`cap_lowered`), in admission order."""
    tenants = ["eve", "bob", "dan", "amy", "cal"]
    workflows: list[Workflow] = [(t, "w", [one(f"{t}1"), one(f"{t}2")]) for t in tenants]
    cfg = write_config(tmp_path, paths, workflows, workers=3, users=users[0])
    log, db = tmp_path / "ev.jsonl", tmp_path / "data" / "state.db"
    proc = _popen(cfg, tmp_path)
    _wait_for_log(log, proc, 1)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    before = tenant_rows(db)
    active = [t for t, s in before if s == "active"]
    waiting = [t for t, s in before if s == "waiting"]
    assert len(active) == users[0] and len(before) == 5, before  # a slot never left free
    logged = len(list(read_events([log])))

    cfg = write_config(tmp_path, paths, workflows, workers=3, users=users[1])
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    events = list(read_events([log]))
    rerun, lowered = rerun_under_new_cap(events, logged, db, users, strict=False)
    assert lowered == active[users[1] :]
    assert admitted(rerun) == (active[users[1] :] + waiting)[: len(admitted(rerun))]
    assert sorted(admitted(rerun)) == sorted(active[users[1] :] + waiting)
    assert set(job_states(db).values()) == {"SUCCEEDED"} and len(job_states(db)) == 10
    assert tenant_rows(db) == []


# ---- cancel while waiting (engine: what the TUI calls) -------------------------------------
def test_a_waiting_tenant_that_cancels_part_of_its_work_keeps_its_place(tmp_path: Path):
    """One slot; ann runs, bob then cat then dan wait. bob cancels one of his two jobs: he
    keeps his place (first). cat cancels the job her other job needs: that one is blocked, cat
    has nothing that can run and leaves the line; dan moves up. Her retry brings her back,
    behind dan. Checked by the strict oracle over the log an `--events` file would hold."""
    from tests.core.fakes import GatedExecutor
    from wsitui.core.engine import Engine
    from wsitui.core.eventlog import JsonlEventLog
    from wsitui.core.records import JobSpec, WorkflowSpec

    def wf(*jobs: JobSpec) -> WorkflowSpec:
        return WorkflowSpec(name="w", jobs=jobs)

    def job(key: str, branch: str = "main", deps: tuple[str, ...] = ()) -> JobSpec:
        return JobSpec(id=key, type="TISSUE_MASK", slide="s.svs", branch=branch, depends_on=deps)

    log = tmp_path / "ev.jsonl"

    async def scenario() -> list[str]:
        ex, events = GatedExecutor(), JsonlEventLog(log)
        engine = Engine(tmp_path / "d", [ex], max_workers=1, max_active_users=1)
        engine.bus.add_listener(events)
        order: list[str] = []
        async with engine:
            a1 = engine.submit("ann", wf(job("a1"))).jobs[0].id
            b = engine.submit("bob", wf(job("b1"), job("b2", "B"))).jobs
            c = engine.submit("cat", wf(job("c1"), job("c2", "B", ("c1",)))).jobs
            engine.submit("dan", wf(job("d1")))
            assert engine.stats().waiting == ("bob", "cat", "dan")
            engine.cancel("bob", b[0].id)
            assert engine.stats().waiting == ("bob", "cat", "dan")  # b2 is left: his place
            engine.cancel("cat", c[0].id)  # c2 is blocked: cat has nothing that can run
            assert engine.stats().waiting == ("bob", "dan")
            engine.retry("cat", c[0].id)  # back, behind dan
            assert engine.stats().waiting == ("bob", "dan", "cat")
            with anyio.fail_after(20):
                await engine.wait_until(lambda: a1 in engine._runs)
                while not engine.is_idle():
                    running = list(engine._runs)
                    if not running:
                        await engine.wait_until(lambda: bool(engine._runs) or engine.is_idle())
                        continue
                    order.extend(j for j in running if j not in order)
                    for j in running:
                        ex.release(j)
                    await engine.wait_until(lambda r=running: not set(r) & set(engine._runs))
        events.close()
        return order

    order = anyio.run(scenario)
    events = list(read_events([log]))
    assert check(events, max_workers=1, max_active_users=1, strict=True).violations == []
    assert admitted(events) == ["ann", "bob", "dan", "cat"]
    assert [j.split(".")[-1] for j in order] == ["a1", "b2", "d1", "c1", "c2"]
