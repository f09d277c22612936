"""The machine-readable summary of workflows and jobs: `wsitui run --json` and `status --json`.

Both print exactly these models, built by one function from job snapshots (from a live engine
or read from a data dir), with the phase and its reason from `wsitui.core.phase`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel

from wsitui.core.paths import ResultsDirs
from wsitui.core.phase import JobPhase, PhaseInfo, Resources, job_phases, workflow_wait
from wsitui.core.records import Job, JobState, Workflow, WorkflowState
from wsitui.core.tally import workflow_progress
from wsitui.session.cohort_rows import CohortSummary


class JobSummary(BaseModel):
    id: str
    key: str
    type: str
    branch: str
    slide: str
    depends_on: list[str]  # job ids
    state: str  # PENDING RUNNING SUCCEEDED FAILED CANCELED
    phase: str  # held blocked after waiting behind ready running succeeded failed canceled
    reason: str  # why it is in that phase, one line ("" when the phase says it all)
    stage: str  # what a running job does now, as its executor says
    counters: dict[str, int]
    blocked: bool  # phase == "blocked" (kept for scripts that read it)
    attempt: int
    crashes: int
    tiles_done: int
    tiles_total: int
    error: str | None
    results_dir: str
    created_at: float
    started_at: float | None
    finished_at: float | None


class WorkflowSummary(BaseModel):
    id: str
    tenant: str
    name: str
    created_at: float
    state: str
    reason: str = ""  # PENDING: its tenant waits for a slot, its place in line (R3); else ""
    progress: float
    jobs: list[JobSummary]
    cohort: CohortSummary | None = None  # a cohort workflow: one row per slide


def workflow_state(
    jobs: Sequence[Job], phases: Mapping[str, PhaseInfo]
) -> tuple[WorkflowState, float]:
    """A workflow's state and progress (0..1) from its jobs and their phases.

    PENDING while any job can still run (pending and not blocked); else FAILED if a job failed,
    CANCELED if one was canceled, SUCCEEDED when all did.
    """
    n = len(jobs)
    states = [j.state for j in jobs]
    if JobState.RUNNING in states:
        state = WorkflowState.RUNNING
    elif n and all(s is JobState.SUCCEEDED for s in states):
        state = WorkflowState.SUCCEEDED
    elif not n or any(
        j.state is JobState.PENDING and phases[j.id].phase is not JobPhase.BLOCKED for j in jobs
    ):
        state = WorkflowState.PENDING
    elif JobState.FAILED in states:
        state = WorkflowState.FAILED
    else:
        state = WorkflowState.CANCELED
    return state, workflow_progress(jobs)  # the engine's rule: jobs weighted by their tiles


def _results_dir(dirs: ResultsDirs, job: Job) -> str:
    try:
        return str(dirs(job.tenant, job.workflow_id, job.key))
    except ValueError:  # an id a stored row should never hold: show no path rather than fail
        return ""


def summarize(
    workflow: Workflow,
    jobs: Sequence[Job],
    *,
    waiting: Sequence[str],
    results_root: Path,
    resources: Resources | None = None,
) -> WorkflowSummary:
    """One workflow with its jobs; `waiting`: tenants waiting for a slot, in order;
    `resources`: (in use, cap) per resource, engine-wide (a ready job names what it waits for)."""
    phases = job_phases(jobs, waiting, resources)
    state, progress = workflow_state(jobs, phases)
    queued = state is WorkflowState.PENDING and any(  # WAITING: in a lane, its tenant waits
        p.phase is JobPhase.WAITING for p in phases.values()
    )
    dirs = ResultsDirs(results_root)  # resolved once, not per job (thousands: ~0.2 s)
    return WorkflowSummary(
        id=workflow.id,
        tenant=workflow.tenant,
        name=workflow.name,
        created_at=workflow.created_at,
        state=str(state),
        reason=workflow_wait(workflow.tenant, waiting, queued),
        progress=progress,
        jobs=[
            JobSummary(
                id=j.id,
                key=j.key,
                type=str(j.job_type),
                branch=j.branch,
                slide=j.slide,
                depends_on=list(j.depends_on),
                state=str(j.state),
                phase=str(phases[j.id].phase),
                reason=phases[j.id].reason,
                stage=j.stage,
                counters=dict(j.counters),
                blocked=phases[j.id].phase is JobPhase.BLOCKED,
                attempt=j.attempt,
                crashes=j.crashes,
                tiles_done=j.tiles_done,
                tiles_total=j.tiles_total,
                error=j.error,
                results_dir=_results_dir(dirs, j),
                created_at=j.created_at,
                started_at=j.started_at,
                finished_at=j.finished_at,
            )
            for j in jobs
        ],
    )
