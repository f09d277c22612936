"""Events tell the truth (README "Scheduling rules": every change is committed to SQLite
before it is published): each event a listener receives is already in state.db, as a
separate reader (`wsitui status`) sees it, and a job's events come in the order of its
transitions. Fake gated executors."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from tests.scenarios.harness import job, make_engine, wf
from wsitui.core.events import Event, JobStateChanged, TenantAdmitted, TenantReleased

pytestmark = pytest.mark.anyio


class Reader:
    """A listener that reads state.db through its own connection at every event."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.problems: list[str] = []
        self.seen: dict[str, list[str]] = {}

    def __call__(self, event: Event) -> None:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            if isinstance(event, JobStateChanged):
                j = event.job
                (state,) = con.execute("SELECT state FROM jobs WHERE id=?", (j.id,)).fetchone()
                if state != j.state:
                    self.problems.append(f"{j.key}: published {j.state}, stored {state}")
                if event.previous != j.state:  # a transition, not a side effect
                    self.seen.setdefault(j.id, []).append(str(j.state))
            elif isinstance(event, (TenantAdmitted, TenantReleased)):
                row = con.execute(
                    "SELECT status FROM tenants WHERE tenant=?", (event.tenant,)
                ).fetchone()
                stored = row[0] if row else None
                if isinstance(event, TenantAdmitted) and stored != "active":
                    self.problems.append(f"{event.tenant}: admitted, stored {stored}")
                if isinstance(event, TenantReleased) and stored == "active" and not event.yielded:
                    self.problems.append(f"{event.tenant}: released, stored active")
        finally:
            con.close()


async def test_every_event_is_already_committed_and_in_transition_order(tmp_path: Path):
    s = make_engine(tmp_path, workers=2, users=1)
    reader = Reader(tmp_path / "state.db")
    s.engine.bus.add_listener(reader)
    async with s.engine:
        s.engine.submit("a", wf("w", job("a1"), job("a2", deps=["a1"]), job("a3", "B")))
        s.engine.submit("b", wf("w", job("b1"), job("b2")))
        await s.finish("a", "a1", "fail")  # a2 blocked
        a3 = s.find("a", "a3")
        s.engine.cancel("a", a3)  # running: it ends CANCELED at its next check
        await s.until(lambda: a3 not in s.engine._runs)
        await s.drain()  # b runs
        s.engine.retry("a", s.find("a", "a1"))
        await s.drain()
    assert reader.problems == []
    assert s.watch.violations == []
    a1 = reader.seen[s.find("a", "a1")]
    assert a1 == ["PENDING", "RUNNING", "FAILED", "PENDING", "RUNNING", "SUCCEEDED"]
    for job_id, states in reader.seen.items():
        for before, after in itertools.pairwise(states):
            assert (before, after) in {
                ("PENDING", "RUNNING"),
                ("PENDING", "CANCELED"),
                ("RUNNING", "SUCCEEDED"),
                ("RUNNING", "FAILED"),
                ("RUNNING", "CANCELED"),
                ("RUNNING", "PENDING"),
                ("FAILED", "PENDING"),
                ("CANCELED", "PENDING"),
            }, (job_id, states)
