"""Why a pending job is not running (core/phase.py), on deep and wide DAGs: every face (TUI
badges, `wsitui run` tables, `wsitui status`, `--json`) derives it for every job it shows."""

from __future__ import annotations

import dataclasses
import time

from tests.job_records import job_record
from wsitui.core.phase import JobPhase, job_phases
from wsitui.core.records import Job, JobState


def _job(i: int, deps: tuple[int, ...], state: JobState = JobState.PENDING) -> Job:
    return job_record(f"j{i}", state, branch=f"b{i % 7}", deps=tuple(f"j{d}" for d in deps), seq=i)


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


class _CountedSeq(int):
    """A job's seq that counts how often it is compared: the work of placing jobs in lanes."""

    compared = 0

    def __lt__(self, other: object) -> bool:
        _CountedSeq.compared += 1
        return int(self) < int(other)  # type: ignore[call-overload]

    def __eq__(self, other: object) -> bool:
        _CountedSeq.compared += 1
        return int(self) == int(other)  # type: ignore[call-overload]

    __hash__ = int.__hash__


def _lane_job(i: int, state: JobState = JobState.PENDING) -> Job:
    return dataclasses.replace(_job(i, (), state), branch="b0", seq=_CountedSeq(i))


def test_one_long_lane_is_placed_in_linear_work_not_a_scan_per_job():
    # "behind X in its lane" scanned the whole lane for every job: O(lane^2) per redraw, 1.5 s
    # of CPU on one lane of 3,000 pending jobs (every TUI redraw, every `wsitui status`).
    for n in (1000, 3000):
        jobs = [_lane_job(i) for i in range(n)]
        _CountedSeq.compared = 0
        phases = job_phases(list(reversed(jobs)))  # the head is found, not assumed first
        assert _CountedSeq.compared <= 4 * n, (n, _CountedSeq.compared)
        assert phases["w.j0"].phase is JobPhase.READY  # the head waits only for a worker
        assert phases[f"w.j{n - 1}"].reason == "behind j0 in its lane"
    jobs[1500] = _lane_job(1500, JobState.RUNNING)
    phases = job_phases(jobs)
    assert phases["w.j0"].reason == "behind j1500 in its lane"  # the running job goes first
    assert phases["w.j2999"].reason == "behind j1500 in its lane"
