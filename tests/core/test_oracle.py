"""The rule oracle against the real engine (a random run with restarts and a crash), and
against hand-made logs that break each rule, so the oracle itself is known to catch them."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.core.chaos import chaos_run
from tests.core.oracle import check


@pytest.mark.parametrize("seed", [1, 2])
def test_a_random_run_with_restarts_and_a_crash_breaks_no_rule(tmp_path, seed):
    result = anyio.run(lambda: chaos_run(tmp_path, tenants=5, jobs=70, seed=seed, max_workers=3))
    assert result.oracle.violations == []
    assert result.missing == []  # the log shows every committed transition, recovery included
    assert result.oracle.starts >= 40 and result.crashes == 1 and result.restarts == 2
    # The run ends with a job that surely fails and one that surely succeeds (not timing).
    assert result.states.get("SUCCEEDED", 0) > 0 and result.states.get("FAILED", 0) > 0
    assert "RUNNING" not in result.states


def start(job: str, tenant: str = "a", branch: str = "main", seq: int = 1, deps=()) -> dict:
    return job_state(job, "RUNNING", tenant, branch, seq, deps)


def job_state(
    job: str, state: str, tenant: str = "a", branch: str = "main", seq: int = 1, deps=()
) -> dict[str, Any]:
    return {
        "event": "job_state",
        "job_id": job,
        "state": state,
        "tenant": tenant,
        "workflow_id": "w",
        "branch": branch,
        "seq": seq,
        "enqueued": True,
        "depends_on": list(deps),
    }


def admitted(tenant: str) -> dict[str, Any]:
    return {"event": "tenant_admitted", "tenant": tenant}


@pytest.mark.parametrize(
    ("events", "rule"),
    [
        (  # two running jobs in one lane
            [
                admitted("a"),
                job_state("x", "PENDING"),
                job_state("y", "PENDING", seq=2),
                start("x"),
                start("y", seq=2),
            ],
            "R1",
        ),
        (  # a younger job starts before the older one of its lane
            [
                admitted("a"),
                job_state("x", "PENDING"),
                job_state("y", "PENDING", seq=2),
                start("y", seq=2),
            ],
            "R1",
        ),
        (  # three workers busy with max_workers=2
            [admitted("a"), start("x", branch="p"), start("y", branch="q"), start("z", branch="r")],
            "R2",
        ),
        (  # a tenant runs without being admitted
            [start("x", tenant="b")],
            "R3",
        ),
        (  # b gained work before c, but c is admitted first
            [
                admitted("a"),
                job_state("a1", "PENDING"),
                job_state("b1", "PENDING", tenant="b"),
                job_state("c1", "PENDING", tenant="c"),
                admitted("c"),
            ],
            "R3",
        ),
        (  # a dependent starts before its upstream succeeded
            [
                admitted("a"),
                job_state("x", "PENDING"),
                job_state("y", "PENDING", "a", "q", 2, ["x"]),
                start("y", branch="q", seq=2, deps=["x"]),
            ],
            "R4",
        ),
        (  # a finished job said to be blocked (its rerun upstream failed)
            [
                admitted("a"),
                job_state("x", "PENDING"),
                start("x"),
                job_state("x", "SUCCEEDED"),
                {
                    **job_state("x", "SUCCEEDED"),
                    "blocked": True,
                    "reason": "blocked: an upstream job failed or was canceled",
                },
            ],
            "R4",
        ),
    ],
)
def test_the_oracle_catches_each_rule_broken(events, rule):
    oracle = check(events, max_workers=2, max_active_users=1)
    assert any(f": {rule}: " in v for v in oracle.violations), oracle.violations


def test_the_oracle_catches_a_transition_missing_from_the_log():
    events = [
        {**job_state("x", "PENDING"), "previous": None},
        admitted("a"),
        {**start("x"), "previous": "PENDING"},
        {**job_state("x", "PENDING"), "previous": "RUNNING"},  # interrupted
        # ... and its restart is missing from the log
        {**job_state("x", "SUCCEEDED"), "previous": "RUNNING"},
    ]
    oracle = check(events, max_workers=2, max_active_users=1)
    assert any(": LOG: " in v for v in oracle.violations), oracle.violations


def progress(job: str, tenant: str = "a") -> dict[str, Any]:
    return {"event": "job_progress", "job_id": job, "tenant": tenant}


@pytest.mark.parametrize(
    ("events", "workers", "users", "rule"),
    [
        (  # a was served last, yet it gets the one worker before b, never served
            [
                admitted("a"),
                job_state("a1", "PENDING", branch="p"),
                job_state("a2", "PENDING", branch="q", seq=2),
                admitted("b"),
                job_state("b1", "PENDING", "b", "r", 3),
                start("a1", branch="p"),
                {**job_state("a1", "SUCCEEDED", branch="p"), "previous": "RUNNING"},
                start("a2", branch="q", seq=2),
            ],
            1,
            2,
            "R6",
        ),
        (  # a job reports progress while a second worker is free and y is ready
            [
                admitted("a"),
                job_state("x", "PENDING", branch="p"),
                job_state("y", "PENDING", branch="q", seq=2),
                start("x", branch="p"),
                progress("x"),
            ],
            2,
            1,
            "R2",
        ),
        (  # a slot stays free while b waits
            [
                admitted("a"),
                job_state("a1", "PENDING"),
                start("a1"),
                job_state("b1", "PENDING", "b", "q", 2),
                progress("a1"),
            ],
            2,
            2,
            "R3",
        ),
    ],
)
def test_the_strict_oracle_catches_an_unfair_or_idle_dispatch(events, workers, users, rule):
    oracle = check(events, max_workers=workers, max_active_users=users, strict=True)
    assert any(f": {rule}: " in v for v in oracle.violations), oracle.violations
    assert check(events, max_workers=workers, max_active_users=users).violations == []
