"""The cohort parts of `wsitui run`, kept out of run.py: notes, trackers, filters, JSON rows."""

from __future__ import annotations

from wsitui.core.events import Listener
from wsitui.core.records import Job
from wsitui.headless.cohort_progress import WithoutCohortJobs
from wsitui.session.cohort import Cohort
from wsitui.session.cohort_rows import TissueAreas, cohort_summary
from wsitui.session.cohort_tracker import CohortTracker
from wsitui.session.session import Session
from wsitui.session.summary import WorkflowSummary


def cohort_trackers(session: Session) -> list[CohortTracker]:
    out = []
    for wf_id, cohort in session.cohort_ids.items():
        jobs = session.engine.workflow(cohort.tenant, wf_id).jobs
        out.append(
            CohortTracker(cohort.tenant, cohort.name, wf_id, [s.id for s in cohort.slides], jobs)
        )
    return out


def _keys(cohorts: dict[int, Cohort]) -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for c in cohorts.values():
        keys.setdefault(c.tenant, set()).update(
            Cohort.job_key(s.id, k) for s in c.slides for k in c.template
        )
    return keys


def hide_cohort_jobs(session: Session, listener: Listener, verbose: bool) -> Listener:
    """`listener` without the events of cohort jobs (unless --verbose, or no cohort)."""
    if verbose or not session.cohorts:
        return listener
    return WithoutCohortJobs(listener, lambda: session.cohort_ids, _keys(session.cohorts))


def summary_files(session: Session) -> dict[str, str]:
    return {w.workflow_id: str(w.csv_path) for w in session.summaries}


def with_cohort(
    session: Session, summary: WorkflowSummary, jobs: tuple[Job, ...]
) -> WorkflowSummary:
    """A workflow's JSON summary with its per-slide rows when it is a cohort."""
    cohort = session.cohort_ids.get(summary.id)
    if cohort is not None:
        summary.cohort = cohort_summary(
            cohort.index_data(),
            jobs,
            summary_csv=summary_files(session).get(summary.id, ""),
            areas=TissueAreas(session.engine.results_root),
        )
    return summary
