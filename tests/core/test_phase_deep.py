"""Why a pending job is not running (core/phase.py), on deep and wide DAGs: every face (TUI
badges, `wsitui run` tables, `wsitui status`, `--json`) derives it for every job it shows."""

from __future__ import annotations

import time

from wsitui.core.phase import JobPhase, job_phases
from wsitui.core.records import Job, JobState


def _job(i: int, deps: tuple[int, ...], state: JobState = JobState.PENDING) -> Job:
    return Job(
        id=f"w.j{i}",
        key=f"j{i}",
        workflow_id="w",
        tenant="t",
        job_type="TISSUE_MASK",
        slide="s.svs",
        branch=f"b{i % 7}",
        depends_on=tuple(f"w.j{d}" for d in deps),
        params={},
        state=state,
        seq=i,
    )


def test_a_chain_of_thousands_below_a_failed_job_is_blocked_not_a_recursion_error():
    # A recursive walk up through PENDING jobs raised RecursionError past ~1,000 of them.
    jobs = [_job(0, (), JobState.FAILED)] + [_job(i, (i - 1,)) for i in range(1, 5000)]
    phases = job_phases(jobs)
    assert phases["w.j4999"].phase is JobPhase.BLOCKED
    assert phases["w.j4999"].reason == "upstream j0 failed; retry it to go on"
    assert phases["w.j1"].reason == "upstream j0 failed; retry it to go on"


def _ladder(layers: int) -> list[Job]:
    """Each layer's two jobs need both of the layer before: 2**layers paths up from the
    bottom."""
    jobs = [_job(0, ()), _job(1, ())]
    for layer in range(1, layers):
        a, b = 2 * layer, 2 * layer + 1
        jobs += [_job(a, (a - 2, a - 1)), _job(b, (a - 2, a - 1))]
    return jobs


def test_a_ladder_of_diamonds_is_walked_once_per_job():
    # With nothing failed, the walk per job followed every path: 2**24 here (seconds; a
    # cohort-sized DAG of joins never finished).
    jobs = _ladder(24)
    started = time.perf_counter()
    phases = job_phases(jobs)
    assert time.perf_counter() - started < 1.0
    assert phases["w.j47"].phase is JobPhase.AFTER
    jobs = _ladder(60)
    jobs[1] = _job(1, (), JobState.CANCELED)
    phases = job_phases(jobs)
    assert phases["w.j119"].reason == "upstream j1 canceled; retry it to go on"
    assert phases["w.j0"].phase is not JobPhase.BLOCKED
