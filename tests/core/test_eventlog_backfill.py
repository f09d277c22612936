"""A process killed between a commit and its log line: the next start's event log catches up
(core/eventlog.py `backfill`), so the log replays to exactly the committed transitions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest

from tests.core.crash import snapshot
from tests.core.fakes import GatedExecutor
from tests.core.oracle import missing_from_log
from wsitui.core.engine import Engine
from wsitui.core.eventlog import JsonlEventLog
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.core.store import Store

pytestmark = pytest.mark.anyio


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_transitions_committed_but_never_logged_are_appended_at_the_next_start(tmp_path):
    log_path = tmp_path / "events.jsonl"
    ex = GatedExecutor()
    spec = WorkflowSpec(
        name="w", jobs=tuple(JobSpec(id=k, type="TISSUE_MASK", slide="s.svs") for k in "ab")
    )
    log = JsonlEventLog(log_path)
    async with Engine(tmp_path / "d", [ex]) as engine:
        engine.bus.add_listener(log)
        w = engine.submit("t", spec)
        a = w.jobs[0].id
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.job("t", a).state is JobState.RUNNING)
        killed = snapshot(engine, tmp_path / "killed")  # what a SIGKILL leaves on disk
        ex.release(a)
        ex.release(w.jobs[1].id)
        with anyio.fail_after(10):
            await engine.wait_idle()
    log.close()
    # The kill came between the commit of a's start and its log line: the log lacks it.
    lines = log_path.read_text().splitlines()
    started = [i for i, ln in enumerate(lines) if '"reason":"started"' in ln]
    crashed = tmp_path / "crashed.jsonl"
    crashed.write_text("\n".join(lines[: started[0]]) + "\n")
    assert missing_from_log(_events(crashed), killed / "state.db") != []

    # A log first attached after the crash starts now: nothing of the past is written into it.
    fresh = JsonlEventLog(tmp_path / "fresh.jsonl")
    store = Store(killed / "state.db", readonly=True)
    try:
        assert fresh.backfill(store) == 0
    finally:
        store.close()
        fresh.close()
    assert (tmp_path / "fresh.jsonl").read_text() == ""

    again = JsonlEventLog(crashed)
    ex = GatedExecutor()
    engine = Engine(killed, [ex])
    engine.bus.add_listener(again)
    engine.on_open.append(again.backfill)
    async with engine:
        ex.release(a)
        ex.release(w.jobs[1].id)
        with anyio.fail_after(10):
            await engine.wait_idle()
    again.close()
    events = _events(crashed)
    assert missing_from_log(events, killed / "state.db") == []
    recovered = [e for e in events if e.get("recovered")]
    assert [(e["job_id"], e["state"], e["reason"]) for e in recovered] == [
        (a, "RUNNING", "started")
    ]
    # A clean start (nothing left RUNNING) reads nothing back and appends nothing.
    shutil.copy(crashed, tmp_path / "before.jsonl")
    third = JsonlEventLog(crashed)
    async with Engine(killed, [GatedExecutor()]) as engine:
        assert third.backfill(engine.store) == 0
    third.close()
    assert crashed.read_text() == (tmp_path / "before.jsonl").read_text()


def test_a_line_cut_short_by_a_kill_leaves_the_next_lines_whole(tmp_path):
    """A log whose last line was cut by a kill: what is appended next (backfilled transitions
    or new events) starts on a line of its own, so it still parses."""
    from wsitui.core.events import TenantAdmitted

    path = tmp_path / "events.jsonl"
    path.write_text('{"event":"tenant_admitted","ts":1.0,"tenant":"a"}\n{"event":"job_st')
    log = JsonlEventLog(path)
    log(TenantAdmitted(2.0, "b"))
    log.close()
    lines = path.read_text().splitlines()
    assert lines[1] == '{"event":"job_st'
    assert json.loads(lines[2])["tenant"] == "b"


def test_a_log_whose_only_line_was_cut_by_a_kill_is_appended_to(tmp_path):
    """A kill during the log's first line (a line longer than one write, or a full disk): the
    restart with the same `--events` refused the file as "not a wsitui event log". It is one
    of ours, cut: appended to, on a fresh line; anything else is still refused."""
    from wsitui.core.eventlog import EventLogError, check_event_log
    from wsitui.core.events import TenantAdmitted

    for cut in ('{"ts":1796528177.9,"event":"job_st', '{"t'):
        path = tmp_path / "events.jsonl"
        path.write_text(cut)
        check_event_log(path)
        log = JsonlEventLog(path)
        log(TenantAdmitted(2.0, "b"))
        log.close()
        lines = path.read_text().splitlines()
        assert lines[0] == cut
        assert json.loads(lines[1])["tenant"] == "b"
        # and at every later start (the cut line is followed by a newline from then on; the
        # second start refused it), also after a start that wrote no line
        check_event_log(path)
        path.write_text(cut + "\n")
        check_event_log(path)
    for other in ('{"ts": 1}\n', "hello", '{"tsx', '{"ts":1\nhello\n', '{"ts":1\n{"ts": 2}\n'):
        path = tmp_path / "other.txt"
        path.write_text(other)
        with pytest.raises(EventLogError, match="is not a wsitui event log"):
            check_event_log(path)


async def test_a_job_whose_first_line_was_lost_is_backfilled_whole(tmp_path):
    """A kill between the commit of a submission and its log lines: the log never named those
    jobs, and backfill covered only jobs it already followed, so their "submitted" (and all
    after it) stayed missing. Jobs committed after the last line the log shows are written
    whole, in commit order; a job committed before the log was attached is left alone."""
    log_path = tmp_path / "events.jsonl"
    ex = GatedExecutor()
    one = WorkflowSpec(name="one", jobs=(JobSpec(id="a", type="TISSUE_MASK", slide="s.svs"),))
    two = WorkflowSpec(
        name="two",
        jobs=(
            JobSpec(id="b", type="TISSUE_MASK", slide="s.svs"),
            JobSpec(id="c", type="TISSUE_MASK", slide="s.svs", depends_on=("b",)),
        ),
    )
    log = JsonlEventLog(log_path)
    async with Engine(tmp_path / "d", [ex], max_workers=1) as engine:
        before = engine.submit("t", one, start=False)  # committed before the log is attached
        engine.bus.add_listener(log)
        w1 = engine.submit("t", one)
        a = w1.jobs[0].id
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.job("t", a).state is JobState.RUNNING)
        w2 = engine.submit("t", two)
        killed = snapshot(engine, tmp_path / "killed")  # the kill: right after w2's commit
        ex.release(a)
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.job("t", a).state is JobState.SUCCEEDED)
    log.close()
    lines = log_path.read_text().splitlines()
    first = next(i for i, ln in enumerate(lines) if w2.workflow.id in ln)  # w2's first line, lost
    crashed = tmp_path / "crashed.jsonl"
    crashed.write_text("\n".join(lines[:first]) + "\n")
    assert not any(e.get("job_id", "").startswith(w2.workflow.id) for e in _events(crashed))

    again = JsonlEventLog(crashed)
    store = Store(killed / "state.db", readonly=True)
    try:
        written = again.backfill(store)
    finally:
        store.close()
        again.close()
    events = _events(crashed)
    recovered = [(e["job_id"], e["state"], e["reason"]) for e in events if e.get("recovered")]
    b, c = (j.id for j in w2.jobs)
    assert recovered == [(b, "PENDING", "submitted"), (c, "PENDING", "submitted")]
    assert written == 2
    # What the log lacks now is only the job committed before it was attached.
    assert [m.split(":")[0] for m in missing_from_log(events, killed / "state.db")] == [
        before.jobs[0].id
    ]
