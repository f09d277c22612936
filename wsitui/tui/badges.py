"""What a job's badge says: its state, and for a pending job, why it is not running yet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wsitui.core.models import Job, JobState


@dataclass(frozen=True, slots=True)
class Badge:
    label: str
    reason: str
    css: str  # one of: running succeeded failed canceled pending blocked waiting held


def _bad_upstream(job: Job, jobs: Mapping[str, Job]) -> Job | None:
    """The failed or canceled job (possibly several levels up) that blocks `job`."""
    for dep_id in job.depends_on:
        dep = jobs.get(dep_id)
        if dep is None:
            continue
        if dep.state in (JobState.FAILED, JobState.CANCELED):
            return dep
        if dep.blocked:
            return _bad_upstream(dep, jobs)
    return None


def badge(
    job: Job,
    jobs: Mapping[str, Job],
    *,
    waiting: Sequence[str] = (),
    lane_running: Job | None = None,
) -> Badge:
    """`jobs`: the workflow's jobs by id; `waiting`: tenants waiting for a slot, in order."""
    if job.state is JobState.RUNNING:
        return Badge("RUNNING", "", "running")
    if job.state is JobState.SUCCEEDED:
        return Badge("SUCCEEDED", "", "succeeded")
    if job.state is JobState.FAILED:
        return Badge("FAILED", (job.error or "").splitlines()[0] if job.error else "", "failed")
    if job.state is JobState.CANCELED:
        return Badge("CANCELED", "", "canceled")
    if job.blocked:
        up = _bad_upstream(job, jobs)
        why = f"upstream {up.key} {str(up.state).lower()}" if up else "an upstream job failed"
        return Badge("BLOCKED", why, "blocked")
    if not job.enqueued:
        return Badge("HELD", "not started: press s", "held")
    if job.tenant in waiting:
        place = list(waiting).index(job.tenant) + 1
        return Badge("WAITING", f"for a tenant slot (#{place} in line)", "waiting")
    unmet = [
        jobs[d] for d in job.depends_on if d in jobs and jobs[d].state is not JobState.SUCCEEDED
    ]
    if unmet:
        return Badge("PENDING", f"after {unmet[0].key}", "pending")
    if lane_running is not None:
        return Badge("PENDING", f"behind {lane_running.key} in its lane", "pending")
    return Badge("PENDING", "waiting for a free worker", "pending")


def clock_text(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def elapsed_and_eta(job: Job, now: float) -> tuple[str, str]:
    if job.started_at is None:
        return "--:--", "--:--"
    end = job.finished_at if job.finished_at is not None else now
    elapsed = end - job.started_at
    if job.state is not JobState.RUNNING:
        return clock_text(elapsed), "--:--"
    if job.tiles_total and job.tiles_done:
        remaining = elapsed * (job.tiles_total - job.tiles_done) / job.tiles_done
        return clock_text(elapsed), clock_text(remaining)
    return clock_text(elapsed), "--:--"
