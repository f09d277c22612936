"""A kill at any commit of a run (between the commit and its log lines): after the restart the
JSONL event log replays to exactly state.db's jobs and tenant states (core/eventlog.py
`backfill`), including a kill right after the run's last end, when nothing is left RUNNING."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.core.crash import kill_at_every_commit, snapshot
from tests.core.engine_helpers import job, until
from tests.core.fakes import GatedExecutor
from tests.core.oracle import check, missing_from_log, read_events
from tests.core.test_release_admission import drain
from wsitui.core.engine import Engine
from wsitui.core.eventlog import JsonlEventLog
from wsitui.core.records import WorkflowSpec
from wsitui.core.store import Store

pytestmark = pytest.mark.anyio

LIMITS = {"max_workers": 1, "max_active_users": 1}


def replay(events: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """What a script replaying the log sees: each job's last state, the active tenants."""
    states: dict[str, str] = {}
    active: list[str] = []
    for e in events:
        if e["event"] == "job_state":
            states[e["job_id"]] = e["state"]
        elif e["event"] == "tenant_admitted" and e["tenant"] not in active:
            active.append(e["tenant"])
        elif e["event"] == "tenant_released" and e["tenant"] in active:
            active.remove(e["tenant"])
    return states, active


def stored(db: Path) -> tuple[dict[str, str], list[str]]:
    store = Store(db, readonly=True)
    try:
        return {j.id: str(j.state) for j in store.jobs()}, store.tenant_state()[0]
    finally:
        store.close()


def opened(engine: Engine, log: Path) -> JsonlEventLog:
    """The event log as `wsitui run --events` attaches it: a listener, backfilled at open."""
    events = JsonlEventLog(log)
    engine.bus.add_listener(events)
    engine.on_open.append(events.backfill)
    return events


async def test_a_kill_at_any_commit_leaves_a_log_that_replays_to_state_db(tmp_path: Path):
    """a's two jobs, then b's (b waits for a's slot): the commits end jobs, release a, admit b
    and end the run. A kill right after the last commit (b1's end and b's release, nothing left
    RUNNING) or after a2's end (a released, b admitted; with one worker b1 starts in a later
    commit) lost those lines for good: backfill ran only when a job was left RUNNING."""
    ex, log = GatedExecutor(), tmp_path / "ev.jsonl"
    engine = Engine(tmp_path / "d", [ex], **LIMITS)
    events = opened(engine, log)
    with kill_at_every_commit(engine, tmp_path / "cuts", log) as cuts:
        async with engine:
            engine.submit("a", WorkflowSpec(name="a", jobs=(job("a1"), job("a2"))))
            engine.submit("b", WorkflowSpec(name="b", jobs=(job("b1"),)))
            await drain(engine, ex)
    events.close()
    assert len(cuts) >= 8
    for copy, written in cuts:
        # A restart with a new, empty --events file: nothing of the past is written into it.
        fresh = tmp_path / f"fresh-{copy.name}.jsonl"
        store = Store(copy / "state.db", readonly=True)
        try:
            assert JsonlEventLog(fresh).backfill(store) == 0, copy.name
        finally:
            store.close()
        assert fresh.read_bytes() == b"", copy.name
        if not written:
            # Killed before the log's first line: it reads as a new file, which is left alone
            # (nothing tells the two apart); the runs' first commit is the only such point.
            continue
        cut = copy / "ev.jsonl"
        cut.write_bytes(written)
        ex2 = GatedExecutor()
        again = Engine(copy, [ex2], **LIMITS)
        events = opened(again, cut)
        async with again:
            # Right after the restart (backfill, then recovery's commit and its lines).
            assert replay(list(read_events([cut]))) == stored(copy / "state.db"), copy.name
            await drain(again, ex2)
        events.close()
        lines = list(read_events([cut]))
        assert replay(lines) == stored(copy / "state.db"), copy.name
        assert missing_from_log(lines, copy / "state.db") == [], copy.name
        assert check(lines, **LIMITS).violations == [], copy.name
    # The last cut: b1's end and b's release were committed, not logged; the restart wrote them.
    last = [json.loads(ln) for ln in (cuts[-1][0] / "ev.jsonl").read_text().splitlines()]
    recovered = [(e["event"], e.get("state"), e.get("tenant")) for e in last if e.get("recovered")]
    assert recovered == [("job_state", "SUCCEEDED", "b"), ("tenant_released", None, "b")]


async def test_a_run_without_the_log_is_caught_up_in_each_jobs_order(tmp_path: Path):
    """A run of the data dir without `--events` in between: the next start with the log writes
    what that run committed (backfill now runs at every start). Its jobs' starts were moved
    after all the ends, as if lost by one commit, so a job read "SUCCEEDED", then "RUNNING"."""
    log, data = tmp_path / "ev.jsonl", tmp_path / "d"
    for with_log, tenants in ((True, "ab"), (False, "cd"), (True, "")):
        ex = GatedExecutor()
        engine = Engine(data, [ex], **LIMITS)
        events = opened(engine, log) if with_log else None
        async with engine:
            for t in tenants:
                engine.submit(t, WorkflowSpec(name=t, jobs=(job(f"{t}1"),)))
            await drain(engine, ex)
        if events is not None:
            events.close()
    lines = list(read_events([log]))
    assert missing_from_log(lines, data / "state.db") == []
    assert replay(lines) == stored(data / "state.db")


async def test_two_data_dirs_sharing_a_log_backfill_only_their_own_tenant_lines(tmp_path: Path):
    """Two data dirs, one `--events` file, tenant "alice" in both. B's alice ends her work and
    is released while A's alice still runs; A is killed and restarted. Backfill read every
    tenant line of the log as A's: B's release left "alice" inactive there, so A's restart wrote
    a spurious `tenant_admitted alice` "recovered" (nothing of A's was missing)."""
    log = tmp_path / "ev.jsonl"
    ex_a, ex_b = GatedExecutor(), GatedExecutor()
    a = Engine(tmp_path / "A", [ex_a], **LIMITS)
    b = Engine(tmp_path / "B", [ex_b], **LIMITS)
    log_a, log_b = opened(a, log), opened(b, log)
    async with a, b:
        a1 = a.submit("alice", WorkflowSpec(name="w", jobs=(job("x"),))).jobs[0].id
        b.submit("alice", WorkflowSpec(name="w", jobs=(job("x"),)))
        await drain(b, ex_b)  # B's alice released
        await until(a, lambda: a1 in a._runs)
        killed = snapshot(a, tmp_path / "killed")  # A killed while its alice's job runs
        written = log.read_bytes()
        ex_a.release(a1)
    log_a.close()
    log_b.close()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(written)
    ex = GatedExecutor()
    again = Engine(killed, [ex], **LIMITS)
    events = opened(again, cut)
    async with again:
        await drain(again, ex)
    events.close()
    lines = list(read_events([cut]))
    assert [e for e in lines if e.get("recovered")] == []
    # A script can tell the two stories apart: each line names its data dir.
    ids = {e.get("data_dir_id") for e in lines}
    assert len(ids) == 2 and None not in ids
    store = Store(killed / "state.db", readonly=True)
    try:
        mine = [e for e in lines if e["data_dir_id"] == store.data_dir_id]
    finally:
        store.close()
    assert replay(mine) == stored(killed / "state.db")
    assert missing_from_log(mine, killed / "state.db") == []
