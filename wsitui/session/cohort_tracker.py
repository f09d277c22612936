"""A cohort's slides as their chains end: counts, throughput measured in this run, and ETA.

Shared by the faces: `wsitui run`'s progress line and the TUI's workflow bar. The rate is the
slides finished in this run over the time since its first job started in this run (slides done
in an earlier run are no part of it), so the ETA follows the machine's real pace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from wsitui.core.records import Job, JobState
from wsitui.core.text import one_line
from wsitui.session.cohort_rows import chain_finished, chain_state


def duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class CohortTracker:
    """One cohort workflow's slides: done, failed, running; throughput and ETA."""

    def __init__(
        self,
        tenant: str,
        name: str,
        workflow_id: str,
        slide_ids: Sequence[str],
        jobs: Sequence[Job],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant, self.name, self.workflow_id = tenant, name, workflow_id
        self.clock = clock
        self._jobs: dict[str, dict[str, Job]] = {sid: {} for sid in slide_ids}
        for job in jobs:
            if job.branch in self._jobs:
                self._jobs[job.branch][job.key] = job
        self.state: dict[str, JobState] = {}  # finished slides: SUCCEEDED, FAILED, CANCELED
        self._running: set[str] = set()  # slides with a job running
        self.succeeded = 0  # kept as slides settle: every figure is O(1) per event
        for sid in self._jobs:
            self._settle(sid)
        self.done_before = len(self.state)  # finished in an earlier run: no part of the rate
        self.first_start: float | None = None  # first job start seen in this run
        self.finished_now = 0  # slides finished in this run

    @property
    def total(self) -> int:
        return len(self._jobs)

    @property
    def failed(self) -> int:
        return len(self.state) - self.succeeded

    @property
    def running(self) -> int:
        return len(self._running)

    def _settle(self, sid: str) -> JobState | None:
        chain = list(self._jobs[sid].values())
        if any(j.state is JobState.RUNNING for j in chain):
            self._running.add(sid)
        else:
            self._running.discard(sid)
        old = self.state.pop(sid, None)
        if old is JobState.SUCCEEDED:
            self.succeeded -= 1
        if not chain_finished(chain):
            return None
        self.state[sid] = chain_state(chain)
        if self.state[sid] is JobState.SUCCEEDED:
            self.succeeded += 1
        return self.state[sid]

    def update(self, job: Job) -> JobState | None:
        """Take a job's new snapshot; the slide's end state when this ended its chain."""
        chain = self._jobs.get(job.branch)
        if chain is None or job.workflow_id != self.workflow_id:
            return None
        chain[job.key] = job
        if job.state is JobState.RUNNING and self.first_start is None:
            self.first_start = job.started_at or self.clock()
        was = job.branch in self.state
        now = self._settle(job.branch)
        if now is not None and not was:
            self.finished_now += 1
            return now
        return None

    def reason(self, sid: str) -> str:
        """Why a finished slide did not succeed: its first job error."""
        errors = [j for j in self._jobs[sid].values() if j.error]
        return one_line(errors[0].error or "") if errors else str(self.state.get(sid, ""))

    def rate(self, now: float | None = None) -> float | None:
        """Slides per second measured in this run; None before the first slide finished."""
        if not self.finished_now or self.first_start is None:
            return None
        elapsed = (now if now is not None else self.clock()) - self.first_start
        return self.finished_now / elapsed if elapsed > 0 else None

    def eta(self, now: float | None = None) -> float | None:
        rate = self.rate(now)
        left = self.total - len(self.state)
        if left == 0:
            return 0.0
        return left / rate if rate else None

    def text(self, now: float | None = None) -> str:
        """'12/200 slides done, 1 failed, 3 running · 3.2 slides/min · ETA 4m10s'."""
        now = now if now is not None else self.clock()
        parts = [f"{len(self.state)}/{self.total} slides done"]
        parts[0] += f", {self.failed} failed, {self.running} running"
        rate = self.rate(now)
        parts.append(f"{rate * 60:.1f} slides/min" if rate else "rate –")
        eta = self.eta(now)
        parts.append(f"ETA {duration(eta)}" if eta is not None else "ETA –")
        return " · ".join(parts)

    def line(self, now: float | None = None) -> str:
        return f"{self.tenant}/{one_line(self.name)} cohort: {self.text(now)}"
