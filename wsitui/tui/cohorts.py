"""Which of the tenant's workflows are cohorts, with their slide counts, ETA and rows.

A workflow is a cohort when the data dir holds its cohort index (written by the session that
submitted it), so a cohort from an earlier session shows as one too. Trackers follow the
engine's events (cheap: one dict update per job event) and measure throughput for the ETA.
"""

from __future__ import annotations

from typing import Any

from wsitui.core.engine import Engine
from wsitui.core.events import Event, JobProgress, JobStateChanged
from wsitui.core.records import WorkflowStatus
from wsitui.session.cohort import read_index
from wsitui.session.cohort_rows import SlideRow, TissueAreas, slide_rows
from wsitui.session.cohort_tracker import CohortTracker, duration


class CohortBook:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._index: dict[str, dict[str, Any] | None] = {}
        self._trackers: dict[str, CohortTracker] = {}
        self.areas = TissueAreas(engine.results_root)

    def index(self, workflow_id: str) -> dict[str, Any] | None:
        if workflow_id not in self._index:
            self._index[workflow_id] = read_index(self.engine.data_dir, workflow_id)
        return self._index[workflow_id]

    def is_cohort(self, workflow_id: str | None) -> bool:
        return workflow_id is not None and self.index(workflow_id) is not None

    def tracker(self, status: WorkflowStatus) -> CohortTracker | None:
        wf = status.workflow
        tracker = self._trackers.get(wf.id)
        if tracker is None:
            index = self.index(wf.id)
            if index is None:
                return None
            listed = [str(s["id"]) for s in index["slides"] if s.get("present", True)]
            tracker = CohortTracker(
                wf.tenant, wf.name, wf.id, listed, status.jobs, clock=self.engine.clock
            )
            self._trackers[wf.id] = tracker
        return tracker

    def observe(self, event: Event) -> None:
        if isinstance(event, JobStateChanged | JobProgress):
            tracker = self._trackers.get(event.job.workflow_id)
            if tracker is not None:
                tracker.update(event.job)

    def bar(self, status: WorkflowStatus) -> tuple[str, float] | None:
        """A cohort workflow's bar: ('12/200 slides · 1 failed · ETA 4m10s', fraction done)."""
        tracker = self.tracker(status)
        if tracker is None:
            return None
        done = len(tracker.state)
        parts = [f"{done}/{tracker.total} slides"]
        if tracker.failed:
            parts.append(f"{tracker.failed} failed")
        eta = tracker.eta()
        if done < tracker.total:
            parts.append(f"ETA {duration(eta)}" if eta is not None else "ETA –")
        return " · ".join(parts), done / tracker.total if tracker.total else 0.0

    def rows(self, status: WorkflowStatus) -> list[SlideRow]:
        index = self.index(status.workflow.id)
        if index is None:
            return []
        return [r for r in slide_rows(index, status.jobs, self.areas) if r.listed]
