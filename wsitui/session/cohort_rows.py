"""Per-slide rows of a cohort workflow, from its job records: what every face shows.

`wsitui run --json` and `wsitui status --json` carry them (`WorkflowSummary.cohort`), the TUI's
cohort table and the headless progress line count them. A cohort is known by its index in the
data dir (`<data dir>/cohorts/<workflow id>.json`, written by the session), so a data dir read
by `wsitui status` shows the same rows as the running process.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from wsitui.core.paths import results_dir
from wsitui.core.records import Job, JobState
from wsitui.core.tally import workflow_progress
from wsitui.session.cohort import read_index

if TYPE_CHECKING:
    from wsitui.core.executor import Executor


def executor_class(job_type: str) -> type[Executor] | None:
    """The registry's lookup, imported on first use, not with this module: the job types bring
    numpy and scipy, which `wsitui status` needs only when a cohort job has a result to read."""
    from wsitui.jobs.registry import executor_class as lookup

    return lookup(job_type)


TISSUE = "tissue_area_mm2"  # the summary column (an executor's summary field) of tissue area


class SlideRow(BaseModel):
    slide_id: str
    path: str
    meta: dict[str, str]
    listed: bool  # False: in an earlier run's cohort, no longer in the config (kept)
    state: str  # PENDING RUNNING SUCCEEDED FAILED CANCELED (the chain's)
    finished: bool  # every job ended, or waits behind one that failed
    jobs: dict[str, str]  # template job id -> state ("BLOCKED" for one behind a failure)
    job_ids: dict[str, str]  # template job id -> global job id
    tiles_done: int
    tiles_total: int
    progress: float  # 0..1 over the chain's jobs
    cells: int | None
    tissue_area_mm2: float | None
    cells_per_mm2: float | None
    run_s: float | None
    started_at: float | None
    finished_at: float | None
    error: str | None


class CohortSummary(BaseModel):
    slides: int  # listed
    succeeded: int
    failed: int  # failed or canceled
    running: int
    pending: int
    summary_csv: str
    rows: list[SlideRow]


def chain_finished(jobs: Sequence[Job]) -> bool:
    """Every job of the slide ended, or waits behind one that failed (blocked)."""
    return bool(jobs) and all(j.state.terminal or j.blocked for j in jobs)


def chain_state(jobs: Sequence[Job]) -> JobState:
    states = {j.state for j in jobs}
    if states == {JobState.SUCCEEDED}:
        return JobState.SUCCEEDED
    for state in (JobState.RUNNING, JobState.FAILED, JobState.CANCELED):
        if state in states:
            return state
    return JobState.PENDING


class TissueAreas:
    """Tissue area (mm²) of succeeded jobs whose type fills the summary's tissue area
    (`summary_columns`), read from their results once each; None for every other job."""

    def __init__(self, results_root: Path) -> None:
        self.results_root = results_root
        self._by_job: dict[str, float | None] = {}

    def __call__(self, job: Job) -> float | None:
        if job.state is not JobState.SUCCEEDED:
            return None  # not remembered: it may succeed later
        if job.id not in self._by_job:
            self._by_job[job.id] = self._read(job)
        return self._by_job[job.id]

    def _read(self, job: Job) -> float | None:
        from wsitui.jobs.common.manifest import MANIFEST_FILE  # see executor_class

        executor = executor_class(str(job.job_type))
        if executor is None:
            return None
        if TISSUE not in executor.summary_columns:
            return None  # no file read for a job type that has no tissue area
        try:
            out = results_dir(self.results_root, job.tenant, job.workflow_id, job.key)
            manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict):
            return None
        area = executor.summary_fields(manifest, out).get(TISSUE)
        return float(area) if isinstance(area, int | float) else None


def slide_rows(
    index: Mapping[str, Any], jobs: Sequence[Job], areas: TissueAreas | None = None
) -> list[SlideRow]:
    """One row per slide of the index (listed first, in order; then the removed ones)."""
    by_slide: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_slide[job.branch].append(job)
    template = [str(k) for k in index.get("template", [])]
    out = []
    for entry in index["slides"]:
        sid = str(entry.get("id", ""))
        chain = by_slide.get(sid, [])
        keyed = {j.key.removeprefix(f"{sid}-"): j for j in chain}
        order = [k for k in template if k in keyed] + [k for k in keyed if k not in template]
        chain = [keyed[k] for k in order]
        state = chain_state(chain)
        failed = [j for j in chain if j.state in (JobState.FAILED, JobState.CANCELED)]
        timed = [j.finished_at - j.started_at for j in chain if j.started_at and j.finished_at]
        # Cells: the last finished count (a MEASURE_CELLS job measuring counts again from 0),
        # else the count so far; a density only from a finished count (72 cells so far over
        # the whole tissue area read 419 per mm², for a slide that ended at 1,724).
        counted = [j for j in chain if "cells" in j.counters]
        final = [j for j in counted if j.state is JobState.SUCCEEDED]
        source = final[-1] if final else counted[-1] if counted else None
        cells = int(source.counters["cells"]) if source is not None else None
        area = None
        for j in chain:
            if areas is not None and area is None:
                area = areas(j)
        starts = [j.started_at for j in chain if j.started_at]
        ends = [j.finished_at for j in chain if j.finished_at]
        finished = chain_finished(chain)
        out.append(
            SlideRow(
                slide_id=sid,
                path=str(entry.get("path", "")),
                meta={str(k): str(v) for k, v in (entry.get("meta") or {}).items()},
                listed=bool(entry.get("present", True)),
                state=str(state),
                finished=finished,
                jobs={
                    k: "BLOCKED"
                    if keyed[k].blocked and keyed[k].state is JobState.PENDING
                    else str(keyed[k].state)
                    for k in order
                },
                job_ids={k: keyed[k].id for k in order},
                tiles_done=sum(j.tiles_done for j in chain),
                tiles_total=sum(j.tiles_total for j in chain),
                progress=workflow_progress(chain),  # the workflow rule: jobs weigh their tiles
                cells=cells,
                tissue_area_mm2=None if area is None else round(area, 6),
                cells_per_mm2=round(cells / area, 3)
                if cells is not None and final and area
                else None,
                run_s=round(sum(timed), 3) if timed else None,
                started_at=min(starts) if starts else None,
                finished_at=max(ends) if finished and ends else None,
                error=(
                    f"{failed[0].key.removeprefix(sid + '-')}: {failed[0].error or failed[0].state}"
                    if failed
                    else None
                ),
            )
        )
    return out


def cohort_summary(
    index: Mapping[str, Any],
    jobs: Sequence[Job],
    *,
    summary_csv: Path | str,
    areas: TissueAreas | None = None,
) -> CohortSummary:
    rows = slide_rows(index, jobs, areas)
    listed = [r for r in rows if r.listed]
    count = {s: sum(r.state == s for r in listed) for s in ("SUCCEEDED", "RUNNING", "PENDING")}
    return CohortSummary(
        slides=len(listed),
        succeeded=count["SUCCEEDED"],
        failed=sum(r.state in ("FAILED", "CANCELED") for r in listed),
        running=count["RUNNING"],
        pending=count["PENDING"],
        summary_csv=str(summary_csv),
        rows=rows,
    )


def summary_csv_path(results_root: Path, tenant: str, workflow_id: str) -> str:
    try:
        return str(results_dir(results_root, tenant, workflow_id, "cohort") / "summary.csv")
    except ValueError:
        return ""


def cohort_of(
    data_dir: Path, results_root: Path, tenant: str, workflow_id: str, jobs: Sequence[Job]
) -> CohortSummary | None:
    """The cohort summary of a stored workflow; None when it is not a cohort."""
    index = read_index(data_dir, workflow_id)
    if index is None:
        return None
    return cohort_summary(
        index,
        jobs,
        summary_csv=summary_csv_path(results_root, tenant, workflow_id),
        areas=TissueAreas(results_root),
    )
