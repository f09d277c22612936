"""Cancel while running, restart and resume, the JSONL log, and a SIGKILL crash test."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

import wsitui.core.supervisor as supervisor_module
from tests.core.crash import snapshot
from tests.core.fakes import GatedExecutor, SleepExecutor
from wsitui.core.engine import Engine
from wsitui.core.eventlog import JsonlEventLog
from wsitui.core.events import Event, JobProgress, JobStateChanged
from wsitui.core.executor import JobContext
from wsitui.core.records import JobSpec, JobState, WorkflowSpec

REPO = Path(__file__).resolve().parents[2]


def spec(*keys: str, branch: str = "main") -> WorkflowSpec:
    return WorkflowSpec(
        name="w",
        jobs=tuple(JobSpec(id=k, type="TISSUE_MASK", slide="s.svs", branch=branch) for k in keys),
    )


@pytest.mark.anyio
async def test_cancel_running_job_stops_at_next_tile_and_blocks_dependents(tmp_path):
    ex = SleepExecutor(tiles=200, tile_seconds=0.02)
    async with Engine(tmp_path, [ex]) as engine:
        w = engine.submit(
            "t",
            WorkflowSpec(
                name="w",
                jobs=(
                    JobSpec(id="a", type="TISSUE_MASK", slide="s"),
                    JobSpec(id="b", type="TISSUE_MASK", slide="s", branch="x", depends_on=("a",)),
                ),
            ),
        )
        a, b = (j.id for j in w.jobs)
        with anyio.fail_after(5):
            await engine.wait_until(lambda: engine.job("t", a).tiles_done >= 3)
        asked = time.monotonic()
        engine.cancel("t", a)
        with anyio.fail_after(5):
            await engine.wait_until(lambda: engine.job("t", a).state.terminal)
        assert time.monotonic() - asked < 1.0
        job = engine.job("t", a)
        assert job.state is JobState.CANCELED and job.tiles_done < 200
        assert engine.job("t", b).blocked
        assert engine.is_idle()
        assert [t.state for t in engine.timeline("t", a)] == [
            JobState.PENDING,
            JobState.RUNNING,
            JobState.CANCELED,
        ]


@pytest.mark.anyio
async def test_stop_and_restart_resumes_interrupted_job_from_checkpoint(tmp_path):
    log = tmp_path / "tiles.log"
    ex = SleepExecutor(tiles=30, tile_seconds=0.01, log=log)
    async with Engine(tmp_path, [ex]) as engine:
        w = engine.submit("t", spec("a", "b"))
        a, b = (j.id for j in w.jobs)
        with anyio.fail_after(5):
            await engine.wait_until(lambda: engine.job("t", a).tiles_done >= 5)
    # Leaving the context interrupted `a`: back to PENDING, its checkpoint kept.
    async with Engine(tmp_path, [ex]) as engine:
        job = engine.job("t", a)
        assert job.state is JobState.RUNNING  # resumed first, at the head of its lane
        with anyio.fail_after(10):
            await engine.wait_idle()
        assert engine.job("t", a).state is JobState.SUCCEEDED
        assert engine.job("t", b).state is JobState.SUCCEEDED
        reasons = [t.reason for t in engine.timeline("t", a)]
        assert any(r.startswith("interrupted") for r in reasons)
    tiles = [int(line.split()[2]) for line in log.read_text().splitlines() if line.startswith(a)]
    assert sorted(set(tiles)) == list(range(30))
    assert len(tiles) == 30  # a clean stop redoes no tile


@pytest.mark.anyio
async def test_an_error_in_the_callers_body_still_stops_running_jobs_cleanly(tmp_path):
    """A face that fails (e.g. its terminal went away) leaves the engine with an exception:
    running jobs still stop at their next tile and are interrupted, not left RUNNING on disk
    (which the next start would count as a crash)."""
    log = tmp_path / "tiles.log"
    ex = SleepExecutor(tiles=30, tile_seconds=0.01, log=log)
    with pytest.raises(BaseExceptionGroup) as raised:  # the engine's task group wraps it
        async with Engine(tmp_path, [ex]) as engine:
            w = engine.submit("t", spec("a"))
            a = w.jobs[0].id
            with anyio.fail_after(5):
                await engine.wait_until(lambda: engine.job("t", a).tiles_done >= 5)
            raise OSError(5, "terminal gone")
    assert raised.group_contains(OSError, match="terminal gone")
    row = sqlite3.connect(tmp_path / "state.db").execute(
        "SELECT state, crashes, interrupted FROM jobs WHERE id=?", (a,)
    )
    assert row.fetchone() == ("PENDING", 0, 1)
    async with Engine(tmp_path, [ex]) as engine:
        with anyio.fail_after(10):
            await engine.wait_idle()
        assert engine.job("t", a).state is JobState.SUCCEEDED
    tiles = [line for line in log.read_text().splitlines() if line.startswith(a)]
    assert len(tiles) == 30  # stopped cleanly: no tile redone


@pytest.mark.anyio
async def test_jsonl_event_log_has_the_documented_fields(tmp_path):
    ex = GatedExecutor()
    path = tmp_path / "events.jsonl"
    log = JsonlEventLog(path)
    async with Engine(tmp_path, [ex]) as engine:
        engine.bus.add_listener(log)
        w = engine.submit("t", spec("a"))
        ex.release(w.jobs[0].id)
        with anyio.fail_after(5):
            await engine.wait_idle()
    log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    states = [e for e in lines if e["event"] == "job_state"]
    assert [e["state"] for e in states] == ["PENDING", "RUNNING", "SUCCEEDED"]
    for e in states:
        assert isinstance(e["ts"], float)
        for key in ("job_id", "workflow_id", "tenant", "branch", "job_type", "state", "attempt"):
            assert key in e
    progress = [e for e in lines if e["event"] == "job_progress"]
    assert progress and progress[-1]["tiles_done"] == progress[-1]["tiles_total"] == 10
    assert {e["event"] for e in lines} >= {"workflow_progress", "tenant_admitted"}
    assert lines[-1]["event"] in ("tenant_released", "workflow_progress")


CRASH_SCRIPT = """
import sys, anyio
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.core.fakes import SleepExecutor
from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, WorkflowSpec

data, submit = Path(sys.argv[1]), sys.argv[2] == "submit"

async def main():
    ex = SleepExecutor(tiles=40, tile_seconds=0.02, log=data / "tiles.log")
    async with Engine(data, [ex], max_workers=2) as engine:
        if submit:
            for t in ("a", "b"):
                engine.submit(t, WorkflowSpec(name="w", jobs=tuple(
                    JobSpec(id=f"j{{i}}", type="TISSUE_MASK", slide="s", branch="main")
                    for i in range(3))))
        print("ready", flush=True)
        await engine.wait_idle()
    print("idle", flush=True)

anyio.run(main)
"""


def test_sigkill_mid_job_then_restart_ends_every_job_exactly_once(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT.format(repo=str(REPO)))
    data = tmp_path / "data"
    data.mkdir()
    log = data / "tiles.log"
    proc = subprocess.Popen([sys.executable, str(script), str(data), "submit"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill once the first jobs are mid-way
        if log.exists() and log.read_text().count("\n") >= 25:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    db = sqlite3.connect(data / "state.db")
    running = dict(db.execute("SELECT id, tiles_done FROM jobs WHERE state='RUNNING'").fetchall())
    checkpoints = dict(db.execute("SELECT job_id, tiles_done FROM checkpoints").fetchall())
    db.close()
    assert running, "the kill should land while jobs run"
    before = log.read_text().splitlines()

    done = subprocess.run(
        [sys.executable, str(script), str(data), "resume"], capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    db = sqlite3.connect(data / "state.db")
    states = dict(db.execute("SELECT id, state FROM jobs").fetchall())
    terminal = db.execute(
        "SELECT job_id, COUNT(*) FROM transitions WHERE state IN ('SUCCEEDED','FAILED','CANCELED')"
        " GROUP BY job_id"
    ).fetchall()
    db.close()
    assert len(states) == 6 and set(states.values()) == {"SUCCEEDED"}  # none lost
    assert sorted(n for _, n in terminal) == [1] * 6  # each ended exactly once
    after = log.read_text().splitlines()[len(before) :]
    for job_id in running:
        first_resumed = min(int(x.split()[2]) for x in after if x.split()[0] == job_id)
        assert first_resumed == checkpoints.get(job_id, 0) > 0  # resumed at its checkpoint
        tiles = {int(x.split()[2]) for x in before + after if x.split()[0] == job_id}
        assert tiles == set(range(40))


@pytest.mark.anyio
async def test_restart_after_retry_keeps_dependents_behind_their_upstream(tmp_path):
    # Regression (review): unblocked dependents got new lane seqs only in memory, so after a
    # restart the dependent sat at the head of the lane waiting for its upstream behind it.
    ex = GatedExecutor()
    async with Engine(tmp_path, [ex]) as engine:
        w = engine.submit(
            "t",
            WorkflowSpec(
                name="w",
                jobs=(
                    JobSpec(id="m1", type="TISSUE_MASK", slide="s"),
                    JobSpec(id="m2", type="TISSUE_MASK", slide="s", depends_on=("m1",)),
                ),
            ),
        )
        m1, m2 = (j.id for j in w.jobs)
        ex.release(m1, "fail")
        with anyio.fail_after(5):
            await engine.wait_idle()
        engine.retry("t", m1)
        assert engine.job("t", m1).seq < engine.job("t", m2).seq
    # Stopped while m1 ran: on restart both must still complete, in order.
    ex2 = GatedExecutor()
    async with Engine(tmp_path, [ex2]) as engine:
        assert engine.job("t", m1).seq < engine.job("t", m2).seq
        ex2.release(m1)
        with anyio.fail_after(5):
            await engine.wait_until(lambda: engine.job("t", m1).state.terminal)
        ex2.release(m2)
        with anyio.fail_after(5):
            await engine.wait_idle()
        assert engine.job("t", m2).state is JobState.SUCCEEDED


@pytest.mark.anyio
async def test_user_cancel_is_kept_when_shutdown_comes_first(tmp_path):
    ex = SleepExecutor(tiles=100, tile_seconds=0.05)
    async with Engine(tmp_path, [ex]) as engine:
        w = engine.submit("t", spec("a"))
        with anyio.fail_after(5):
            await engine.wait_until(lambda: engine.job("t", w.jobs[0].id).tiles_done >= 1)
        engine.cancel("t", w.jobs[0].id)  # leaving the context right away: shutdown too
    async with Engine(tmp_path, [ex]) as engine:
        assert engine.job("t", w.jobs[0].id).state is JobState.CANCELED
        assert engine.is_idle()


@pytest.mark.anyio
async def test_bad_results_path_fails_the_job_not_the_engine(tmp_path):
    ex = GatedExecutor()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "data" / "results").mkdir(parents=True)
    (tmp_path / "data" / "results" / "t").symlink_to(outside)  # escapes the results root
    async with Engine(tmp_path / "data", [ex]) as engine:
        w = engine.submit("t", spec("a"))
        with anyio.fail_after(5):
            await engine.wait_idle()
        job = engine.job("t", w.jobs[0].id)
        assert job.state is JobState.FAILED and "outside" in (job.error or "")
    assert list(outside.iterdir()) == []


@pytest.mark.anyio
async def test_starting_a_canceled_held_job_is_refused_cleanly(tmp_path):
    from wsitui.core.engine import InvalidRequest

    ex = GatedExecutor()
    async with Engine(tmp_path, [ex]) as engine:
        w = engine.submit("t", spec("a", "b"), start=False)
        a, b = (j.id for j in w.jobs)
        engine.cancel("t", a)
        with pytest.raises(InvalidRequest, match="'a' is CANCELED: only held jobs can be started"):
            engine.start("t", [a, b])
        assert not engine.job("t", b).enqueued  # nothing changed
        engine.start_workflow("t", w.workflow.id)  # starts b, skips canceled a
        assert engine.job("t", b).state is JobState.RUNNING
        ex.release(b)
        with anyio.fail_after(5):
            await engine.wait_idle()


@pytest.mark.anyio
async def test_starting_a_finished_job_names_what_does_it(tmp_path):
    """A succeeded job is rerun, a failed or canceled one retried: `start` says which."""
    from wsitui.core.engine import InvalidRequest

    ex = GatedExecutor()
    async with Engine(tmp_path, [ex]) as engine:
        w = engine.submit("t", spec("a", "b"), start=False)
        a, b = (j.id for j in w.jobs)
        engine.start("t", [a])
        ex.release(a)
        with anyio.fail_after(5):
            await engine.wait_idle()
        engine.cancel("t", b)
        with pytest.raises(InvalidRequest, match="SUCCEEDED: only held jobs can be started; rerun"):
            engine.start("t", [a])
        with pytest.raises(InvalidRequest, match="CANCELED: only held jobs can be started; retry"):
            engine.start("t", [b])


@pytest.mark.anyio
async def test_a_failing_listener_is_dropped_and_the_engine_goes_on(tmp_path):
    ex = GatedExecutor()

    def broken(event: object) -> None:
        raise OSError("disk full")

    async with Engine(tmp_path, [ex]) as engine:
        engine.bus.add_listener(broken)
        w = engine.submit("t", spec("a"))
        ex.release(w.jobs[0].id)
        with anyio.fail_after(5):
            await engine.wait_idle()
        assert engine.job("t", w.jobs[0].id).state is JobState.SUCCEEDED


class StagedCheckpointer(SleepExecutor):
    """Sets a stage before its first report (that progress commit saves a total of 0), then
    reports and checkpoints 48 of 100 tiles and waits: the instant a SIGKILL hits."""

    def __init__(self) -> None:
        super().__init__(tiles=100)
        self.saved = threading.Event()
        self.gate = threading.Event()

    def _work(self, ctx: JobContext) -> None:
        saved = ctx.checkpoint.load()
        if saved is None:
            ctx.set_stage("reading")
            ctx.report(48, self.tiles)
            ctx.checkpoint.save({"next_tile": 48}, 48)
            self.saved.set()
        else:
            ctx.report(saved["next_tile"], self.tiles)
        while not self.gate.wait(0.02):
            ctx.check_cancel()


@pytest.mark.anyio
async def test_a_job_resumed_after_a_kill_continues_from_its_checkpoint_of_total(
    tmp_path, monkeypatch
):
    """#15 follow-up: the job row's total is saved with the checkpoint, not only with the
    throttled progress commit; a resume used to publish "48 of 0"."""
    # No progress commit but the first.
    monkeypatch.setattr(supervisor_module, "PROGRESS_COMMIT_S", 1e9)
    ex = StagedCheckpointer()
    async with Engine(tmp_path / "first", [ex]) as engine:
        (job,) = engine.submit("t", spec("a")).jobs
        with anyio.fail_after(30):
            await anyio.to_thread.run_sync(ex.saved.wait)
        killed = snapshot(engine, tmp_path / "killed")  # what a SIGKILL leaves on disk
        ex.gate.set()

    ex = StagedCheckpointer()
    seen: list[tuple[str, int, int]] = []

    def record(event: Event) -> None:
        if isinstance(event, (JobStateChanged, JobProgress)) and event.job.id == job.id:
            seen.append((event.job.state, event.job.tiles_done, event.job.tiles_total))

    engine = Engine(killed, [ex])
    engine.bus.add_listener(record)  # before it opens, as every face does: recovery included
    async with engine:
        with anyio.fail_after(30):
            await engine.wait_until(lambda: engine.job("t", job.id).state is JobState.RUNNING)
        ex.gate.set()
        with anyio.fail_after(30):
            await engine.wait_until(lambda: engine.job("t", job.id).state.terminal)
    assert seen[0] == (JobState.PENDING, 48, 100)  # the recovery commit: what it continues from
    assert all(total > 0 and done <= total for _, done, total in seen)
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)  # never back


class Counting(SleepExecutor):
    """Reports 48 of 100 tiles and 259 cells, saves no checkpoint, and waits (like a job that
    keeps its work in shards): the instant a SIGKILL hits."""

    def __init__(self) -> None:
        super().__init__(tiles=100)
        self.reported = threading.Event()
        self.gate = threading.Event()

    def _work(self, ctx: JobContext) -> None:
        ctx.report(48, self.tiles, {"cells": 259})
        self.reported.set()
        while not self.gate.wait(0.02):
            ctx.check_cancel()


@pytest.mark.anyio
async def test_a_job_resumed_after_a_kill_without_checkpoint_drops_counters_with_its_tiles(
    tmp_path,
):
    """After a kill -9 a job back at tile 0 (no checkpoint) kept the row's counters: `wsitui
    status` and its card read "0/100 tiles, 259 cells" while it waited to run again."""
    ex = Counting()
    async with Engine(tmp_path / "first", [ex]) as engine:
        (job,) = engine.submit("t", spec("a")).jobs
        with anyio.fail_after(30):
            await anyio.to_thread.run_sync(ex.reported.wait)
        # The first report is committed at once (the 2 s throttle starts after it).
        await engine.wait_until(lambda: engine.job("t", job.id).counters == {"cells": 259})
        killed = snapshot(engine, tmp_path / "killed")
        ex.gate.set()
    with sqlite3.connect(killed / "state.db") as db:
        assert db.execute("SELECT tiles_done, counters FROM jobs").fetchone() == (
            48,
            '{"cells": 259}',
        )

    recovered: list[tuple[int, dict[str, int]]] = []

    def record(event: Event) -> None:
        if isinstance(event, JobStateChanged) and event.job.state is JobState.PENDING:
            recovered.append((event.job.tiles_done, dict(event.job.counters)))

    again = Counting()
    engine = Engine(killed, [again])
    engine.bus.add_listener(record)  # before it opens: the recovery commit included
    async with engine:
        with anyio.fail_after(30):
            await anyio.to_thread.run_sync(again.reported.wait)
        again.gate.set()
    assert recovered[0] == (0, {})  # the recovery commit, what status reads until it runs
