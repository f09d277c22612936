"""Replays a JSONL event log and checks the scheduling rules held at every step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def replay(
    log: Path, *, max_workers: int, max_active_users: int, depends_on: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Return the events; raise AssertionError naming the first event that breaks a rule."""
    events = [json.loads(line) for line in log.read_text().splitlines()]
    state: dict[str, str] = {}
    running: dict[str, dict[str, Any]] = {}
    last_seq_started: dict[tuple[str, str, str], int] = {}
    active: list[str] = []
    last_ts = 0.0
    for n, e in enumerate(events):
        where = f"event {n} ({e})"
        assert e["ts"] >= last_ts, f"time goes backwards at {where}"
        last_ts = e["ts"]
        if e["event"] == "tenant_admitted":
            assert e["tenant"] not in active, where
            active.append(e["tenant"])
            assert len(active) <= max_active_users, f"R3 cap broken at {where}"
        elif e["event"] == "tenant_released":
            assert e["tenant"] in active, where
            assert not any(j["tenant"] == e["tenant"] for j in running.values()), where
            active.remove(e["tenant"])
        elif e["event"] == "job_state":
            job_id, new = e["job_id"], e["state"]
            lane = (e["tenant"], e["workflow_id"], e["branch"])
            if new == "RUNNING" and state.get(job_id) != "RUNNING":
                assert e["tenant"] in active, f"R3: tenant not admitted at {where}"
                assert not any(
                    (j["tenant"], j["workflow_id"], j["branch"]) == lane for j in running.values()
                ), f"R1: two running jobs in lane {lane} at {where}"
                assert len(running) < max_workers, f"R2 broken at {where}"
                for dep in depends_on.get(job_id, []):
                    assert state.get(dep) == "SUCCEEDED", f"R4: {dep} not done at {where}"
                if e["attempt"] == 1:
                    assert e["seq"] > last_seq_started.get(lane, 0), f"R1 FIFO at {where}"
                    last_seq_started[lane] = e["seq"]
                running[job_id] = e
            elif new != "RUNNING":
                running.pop(job_id, None)
            state[job_id] = new
    assert not running, "jobs still running at the end of the log"
    return events
