"""Scheduling scenarios from outside: `wsitui run` on a config of several tenants (real
TISSUE_MASK jobs on a small generated slide), checked from its JSONL event log (the strict
oracle: R1-R4, R6's start order, no idle worker or slot) and state.db alone, across a SIGKILL
and the rerun that resumes (README: Commands, Scheduling rules, Machine-readable output)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.core.oracle import check, missing_from_log, read_events
from tests.headless.helpers import REPO, wsitui

TENANTS = ["zed", "amy", "kim", "bob"]  # config order: not name order
# Branch A: [x, y]; branch B: [b1, b2]; x needs b2 (a cross-branch dependency).
JOBS = [("x", "A", ["b2"]), ("y", "A", []), ("b1", "B", []), ("b2", "B", [])]


def config(tmp_path: Path, slide: Path, workers: int = 2, users: int = 2) -> Path:
    out = [
        f"[scheduler]\nmax_workers = {workers}\nmax_active_users = {users}\n"
        f'[paths]\ndata_dir = "data"\nevents = "ev.jsonl"\n'
    ]
    for tenant in TENANTS:
        out.append(f'[[workflows]]\ntenant = "{tenant}"\nname = "w"\n')
        for key, branch, deps in JOBS:
            out.append(
                f'  [[workflows.jobs]]\n  id = "{key}"\n  type = "TISSUE_MASK"\n'
                f'  slide = "{slide}"\n  branch = "{branch}"\n  depends_on = {json.dumps(deps)}\n'
            )
    path = tmp_path / "c.toml"
    path.write_text("".join(out))
    return path


def starts(events: list[dict]) -> list[tuple[str, str]]:
    return [
        (e["tenant"], e["job_id"].split(".")[-1])
        for e in events
        if e["event"] == "job_state" and e["state"] == "RUNNING" and e["previous"] != "RUNNING"
    ]


def check_order(events: list[dict]) -> None:
    """Arrival order of tenants is config order; each branch starts in config order."""
    admitted = [e["tenant"] for e in events if e["event"] == "tenant_admitted"]
    assert admitted == TENANTS
    for tenant in TENANTS:
        # A job that ran at a kill starts again: its first start is its place in its branch.
        mine = list(dict.fromkeys(k for t, k in starts(events) if t == tenant))
        assert [k for k in mine if k in ("x", "y")] == ["x", "y"]
        assert [k for k in mine if k in ("b1", "b2")] == ["b1", "b2"]
        assert mine.index("b2") < mine.index("x")


def test_a_config_of_four_tenants_runs_by_the_rules(tmp_path: Path, slides: tuple[Path, Path]):
    out = wsitui("run", config(tmp_path, slides[1]), "--quiet", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    events = list(read_events([tmp_path / "ev.jsonl"]))
    oracle = check(events, max_workers=2, max_active_users=2, strict=True)
    assert oracle.violations == []
    assert missing_from_log(events, tmp_path / "data" / "state.db") == []
    check_order(events)


def test_sigkill_mid_run_then_the_same_command_finishes_exactly_where_it_was(
    tmp_path: Path, slides: tuple[Path, Path]
):
    cfg = config(tmp_path, slides[0])
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsitui.cli", "run", str(cfg), "--quiet"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = tmp_path / "ev.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill once a few jobs have ended and others run
        text = log.read_text() if log.exists() else ""
        if text.count('"state":"SUCCEEDED"') >= 3 and text.endswith("\n"):
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    logged_at_kill = len(list(read_events([log])))
    db = tmp_path / "data" / "state.db"
    con = sqlite3.connect(db)
    running = [r[0] for r in con.execute("SELECT id FROM jobs WHERE state='RUNNING'")]
    done = {r[0] for r in con.execute("SELECT id FROM jobs WHERE state='SUCCEEDED'")}
    con.close()
    assert done and len(done) < 16, "the kill should land mid-run"

    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    events = list(read_events([log]))
    oracle = check(events, max_workers=2, max_active_users=2, strict=True)
    assert oracle.violations == []
    assert missing_from_log(events, db) == []
    check_order(events)
    con = sqlite3.connect(db)
    states = dict(con.execute("SELECT id, state FROM jobs").fetchall())
    ends = dict(
        con.execute(
            "SELECT job_id, COUNT(*) FROM transitions WHERE state='SUCCEEDED' GROUP BY job_id"
        ).fetchall()
    )
    con.close()
    assert len(states) == 16 and set(states.values()) == {"SUCCEEDED"}  # no job lost
    assert set(ends.values()) == {1}  # none ran twice to success
    # What ran at the kill started again first in the rerun, before any other job.
    again = [
        e["job_id"]
        for e in events[logged_at_kill:]
        if e["event"] == "job_state" and e["state"] == "RUNNING" and e["previous"] != "RUNNING"
    ]
    assert set(again[: len(running)]) == set(running)
