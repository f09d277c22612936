"""A job's phase as a person reads it: one derivation shared by every face.

The stored state is `JobState`; the scheduler has its own view (`rules.SchedState`, whose
docstring relates all three); a face wants more: *why* a pending job is not running. This
module answers that from job snapshots alone (plus the waiting-tenant order), so the TUI,
`wsitui status` (which reads a data dir without an engine) and `wsitui run --json` agree on
every job. Order of precedence for a PENDING job:

  held (not started by the user) → blocked (an upstream failed or was canceled) → after a
  dependency (an upstream has not succeeded yet) → waiting (its tenant waits for a slot) →
  behind (another job of its lane runs or is ahead of it) → ready (waiting for a free worker,
  or for the resource it needs that another job holds: "waiting for the GPU").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from wsitui.core.executor import resource_label
from wsitui.core.records import Job, JobState


class JobPhase(StrEnum):
    HELD = "held"
    BLOCKED = "blocked"
    AFTER = "after"  # waiting on a dependency that has not succeeded yet
    WAITING = "waiting"  # its tenant waits for an active-tenant slot
    BEHIND = "behind"  # another job of its lane runs or is ahead of it
    READY = "ready"  # first in its lane, waiting for a free worker (or resource)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


_TERMINAL = {
    JobState.RUNNING: JobPhase.RUNNING,
    JobState.SUCCEEDED: JobPhase.SUCCEEDED,
    JobState.FAILED: JobPhase.FAILED,
    JobState.CANCELED: JobPhase.CANCELED,
}


@dataclass(frozen=True, slots=True)
class PhaseInfo:
    phase: JobPhase
    reason: str = ""  # one line; empty when the phase says it all


def _bad_upstreams(by_id: Mapping[str, Job]) -> dict[str, Job | None]:
    """Per job, the failed or canceled job (possibly several levels up, through PENDING jobs
    or SUCCEEDED jobs) that blocks it: its first dependency that is one, or the
    first found above such a dependency. Iterative and memoized: a recursive walk per job ran
    out of stack on a chain of ~1,000 pending jobs (every face that shows phases failed) and
    walked each diamond of a DAG once per path."""
    memo: dict[str, Job | None] = {}
    for start in by_id:
        stack = [start]
        while stack:
            job = by_id[stack[-1]]
            if job.id in memo:
                stack.pop()
                continue
            todo = [d for d in job.depends_on if d in by_id and d not in memo and _passes(by_id[d])]
            if todo:
                stack.extend(reversed(todo))
                continue
            stack.pop()
            memo[job.id] = _first_bad(job, by_id, memo)
    return memo


def _first_bad(job: Job, by_id: Mapping[str, Job], memo: Mapping[str, Job | None]) -> Job | None:
    for dep_id in job.depends_on:
        dep = by_id.get(dep_id)
        if dep is None:
            continue
        if dep.state in (JobState.FAILED, JobState.CANCELED):
            return dep
        if _passes(dep) and memo[dep_id] is not None:
            return memo[dep_id]
    return None


def _passes(job: Job) -> bool:
    """Whether a failure above `job` blocks the jobs below it: a PENDING job's does, and so
    does a SUCCEEDED one's (R4 is transitive: a SUCCEEDED job whose upstream was rerun and
    failed blocks its dependents, whose faces named no culprit). The engine never marks a
    finished job blocked, so its state is what tells."""
    return job.state in (JobState.PENDING, JobState.SUCCEEDED) or job.blocked


def _in_lane(job: Job) -> bool:
    """Queued and standing in its lane (not held, not blocked)."""
    return job.state is JobState.PENDING and job.enqueued and not job.blocked


@dataclass(frozen=True, slots=True)
class _Lane:
    """What a pending job of a lane is behind: the lane's running job if there is one, else
    its head (the oldest queued entry, by `(seq, id)`). Found once per lane, so deriving the
    phase of every job is linear in the lane: scanning the lane per job was O(lane^2), 1.5 s
    of CPU per redraw on one lane of 3,000 pending jobs."""

    running: Job | None
    head: Job | None


def _lanes(jobs: Sequence[Job]) -> dict[str, _Lane]:
    running: dict[str, Job] = {}
    head: dict[str, Job] = {}
    for job in jobs:
        if job.state is JobState.RUNNING:
            running.setdefault(job.branch, job)
        elif _in_lane(job):
            first = head.get(job.branch)
            if first is None or (job.seq, job.id) < (first.seq, first.id):
                head[job.branch] = job
    return {b: _Lane(running.get(b), head.get(b)) for b in running.keys() | head.keys()}


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, … 11th, 12th, 13th, … 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def slot_wait(place: int) -> str:
    """What a waiting tenant's workflow says (R3): its place in line for an active-tenant slot,
    the place first (a narrow row cuts the end)."""
    return f"{ordinal(place)} in line for a tenant slot"


def places_in_line(waiting: Sequence[str]) -> dict[str, int]:
    """Each waiting tenant's place in line for a slot (1 = next), from `waiting`, the engine's
    admission order; a tenant listed twice keeps its first place. The one reading of that
    order shared by a workflow's reason (`workflow_wait`) and its jobs' (`job_phases`)."""
    places: dict[str, int] = {}
    for place, tenant in enumerate(waiting, 1):
        places.setdefault(tenant, place)
    return places


def workflow_wait(tenant: str, waiting: Sequence[str], queued: bool) -> str:
    """A workflow's reason for not running when its tenant waits for a slot: `slot_wait` of its
    tenant's place in `waiting` (the engine's admission order) if it has work `queued` in a
    lane, else "" (its held or blocked jobs wait for no slot)."""
    place = places_in_line(waiting).get(tenant) if queued else None
    return slot_wait(place) if place is not None else ""


Resources = Mapping[str, tuple[int, int]]  # resource name: (in use, cap), engine-wide (R9)


def resources_in_use(
    jobs: Iterable[Job], capacity: Mapping[str, int]
) -> dict[str, tuple[int, int]]:
    """(in use, cap) of each resource from job snapshots alone: what RUNNING jobs hold. For a
    reader without an engine (`wsitui status`); a live face passes `EngineStats.resources`."""
    used = dict.fromkeys(capacity, 0)
    for job in jobs:
        if job.state is JobState.RUNNING:
            for name, amount in job.needs.items():
                used[name] = used.get(name, 0) + amount
    return {name: (used[name], capacity.get(name, 0)) for name in used}


def resource_wait(needs: Mapping[str, int], resources: Resources) -> str:
    """What a ready job waits for besides a worker: the first resource it needs that is full
    now (R9), "" when all fit; named by the label declared with it (`executor.resource_label`:
    "the GPU", else "a free <name>")."""
    for name, amount in sorted(needs.items()):
        used, cap = resources.get(name, (0, 0))
        if amount > 0 and used + amount > cap:
            return resource_label(name)
    return ""


def job_phases(
    jobs: Sequence[Job], waiting: Sequence[str] = (), resources: Resources | None = None
) -> dict[str, PhaseInfo]:
    """Phase of every job of one workflow. `waiting`: tenants waiting for a slot, in order;
    `resources`: (in use, cap) of each resource, engine-wide (None: not known, so a ready job
    says it waits for a worker)."""
    by_id = {job.id: job for job in jobs}
    lanes = _lanes(jobs)
    bad = _bad_upstreams(by_id)
    places = places_in_line(waiting)
    out: dict[str, PhaseInfo] = {}
    for job in jobs:
        out[job.id] = _phase(job, by_id, bad, lanes.get(job.branch), places, resources)
    return out


def job_phase(
    job: Job, jobs: Sequence[Job], waiting: Sequence[str] = (), resources: Resources | None = None
) -> PhaseInfo:
    """Phase of one job; `jobs` are its workflow's jobs."""
    return job_phases(jobs, waiting, resources)[job.id]


def _phase(
    job: Job,
    by_id: Mapping[str, Job],
    bad: Mapping[str, Job | None],
    lane: _Lane | None,
    places: Mapping[str, int],
    resources: Resources | None,
) -> PhaseInfo:
    if job.state in _TERMINAL:
        reason = ""
        if job.state is JobState.FAILED and job.error:
            reason = job.error.splitlines()[0]
        elif job.state is JobState.RUNNING and job.stage:
            reason = job.stage
        return PhaseInfo(_TERMINAL[job.state], reason)
    if not job.enqueued:
        return PhaseInfo(JobPhase.HELD, "not started yet")
    up = bad[job.id]
    if job.blocked or up is not None:
        why = f"upstream {up.key} {str(up.state).lower()}" if up else "an upstream job failed"
        return PhaseInfo(JobPhase.BLOCKED, why + "; retry it to go on")
    unmet = [
        by_id[d] for d in job.depends_on if d in by_id and by_id[d].state is not JobState.SUCCEEDED
    ]
    if unmet:
        dep = unmet[0]
        note = " (not started)" if dep.state is JobState.PENDING and not dep.enqueued else ""
        return PhaseInfo(JobPhase.AFTER, f"after {dep.key}{note}")
    if job.tenant in places:
        return PhaseInfo(JobPhase.WAITING, slot_wait(places[job.tenant]))  # as its workflow says
    # Here the job is PENDING, queued and not blocked: it stands in its lane.
    first = None
    if lane is not None:
        first = lane.running or (lane.head if lane.head is not job else None)
    if first is not None:
        return PhaseInfo(JobPhase.BEHIND, f"behind {first.key} in its lane")
    busy = resource_wait(job.needs, resources) if resources is not None else ""
    return PhaseInfo(JobPhase.READY, f"waiting for {busy or 'a free worker'}")
