"""What `wsitui run` shows for a cohort: one progress line, not a line (or a bar) per job.

`CohortTracker` counts a cohort's slides as their chains end and measures its throughput
(slides finished in this run over the time since its first job started in this run); the ETA
is the slides left over that rate, so it follows the real pace of the machine, not job counts.
On a terminal the line is one bar of the run's rich progress; off one (logs, pipes) it is
printed when the counts change, at most every `PLAIN_EVERY_S` seconds, plus one line per slide
that fails. `--verbose` shows the cohort's jobs as any other workflow's instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TextIO

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.progress import TaskID
from rich.table import Table
from rich.text import Text

from wsitui.core.events import Event, JobProgress, JobStateChanged, Listener
from wsitui.core.records import Job, JobState
from wsitui.core.text import one_line
from wsitui.headless.display import ProgressBars
from wsitui.session.cohort_rows import chain_finished, chain_state

PLAIN_EVERY_S = 10.0


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
        for sid in self._jobs:
            self._settle(sid)
        self.done_before = len(self.state)  # finished in an earlier run: no part of the rate
        self.first_start: float | None = None  # first job start seen in this run
        self.finished_now = 0  # slides finished in this run

    @property
    def total(self) -> int:
        return len(self._jobs)

    @property
    def succeeded(self) -> int:
        return sum(s is JobState.SUCCEEDED for s in self.state.values())

    @property
    def failed(self) -> int:
        return len(self.state) - self.succeeded

    @property
    def running(self) -> int:
        return sum(
            any(j.state is JobState.RUNNING for j in chain.values())
            for sid, chain in self._jobs.items()
            if sid not in self.state
        )

    def _settle(self, sid: str) -> JobState | None:
        chain = list(self._jobs[sid].values())
        if chain_finished(chain):
            self.state[sid] = chain_state(chain)
            return self.state[sid]
        self.state.pop(sid, None)
        return None

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


class CohortProgress:
    """An engine listener: each cohort's bar (terminal) or its periodic line (logs)."""

    def __init__(
        self,
        trackers: Sequence[CohortTracker],
        *,
        bars: ProgressBars | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.trackers = {t.workflow_id: t for t in trackers}
        self.bars, self.out = bars, out
        self._tasks: dict[str, TaskID] = {}
        self._printed: dict[str, float] = {}
        if bars is not None:
            for t in trackers:
                self._tasks[t.workflow_id] = bars.progress.add_task(
                    f"[bold]{t.tenant}[/] · {escape(one_line(t.name))} [dim](cohort)[/]",
                    total=t.total,
                    completed=len(t.state),
                    state="",
                    doing=t.text(),
                )

    def __call__(self, event: Event) -> None:
        if not isinstance(event, JobStateChanged | JobProgress):
            return
        tracker = self.trackers.get(event.job.workflow_id)
        if tracker is None:
            return
        ended = tracker.update(event.job)
        if self.bars is not None:
            self.bars.progress.update(
                self._tasks[tracker.workflow_id], completed=len(tracker.state), doing=tracker.text()
            )
        if self.out is None or not isinstance(event, JobStateChanged):
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
        if ended in (JobState.FAILED, JobState.CANCELED):
            print(
                f"{stamp} {tracker.tenant}/{one_line(tracker.name)} slide {event.job.branch} "
                f"{ended}: {tracker.reason(event.job.branch)}",
                file=self.out,
                flush=True,
            )
        if ended is None:
            return
        last = self._printed.get(tracker.workflow_id)
        all_done = len(tracker.state) == tracker.total
        if all_done or last is None or event.ts - last >= PLAIN_EVERY_S:
            self._printed[tracker.workflow_id] = event.ts
            print(f"{stamp} {tracker.line(event.ts)}", file=self.out, flush=True)


class WithoutCohortJobs:
    """A listener that passes on every event but those of cohort jobs (shown by their line).

    Before the cohorts are submitted their workflow ids are not known yet: a job is then
    recognised by its tenant and key (`<slide id>-<template job id>`), as expanded.
    """

    def __init__(
        self,
        inner: Listener,
        workflow_ids: Callable[[], Collection[str]],
        keys: Mapping[str, Collection[str]],
    ) -> None:
        self.inner, self.workflow_ids, self.keys = inner, workflow_ids, keys

    def __call__(self, event: Event) -> None:
        job = getattr(event, "job", None)
        if job is not None:
            ids = self.workflow_ids()
            if job.workflow_id in ids or (not ids and job.key in self.keys.get(job.tenant, ())):
                return
        self.inner(event)


def cohort_table(trackers: Sequence[CohortTracker], summaries: Mapping[str, str]) -> Group:
    """`wsitui run`'s closing lines for cohorts: counts per cohort, then its summary file and
    the first failed slides with their reasons (all of them are in the summary)."""
    table = Table(title="cohorts", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("workflow", overflow="fold", ratio=1, min_width=8)
    for col in ("slides", "succeeded", "failed", "left"):
        table.add_column(col, no_wrap=True, justify="right")
    lines = Text()
    for t in trackers:
        table.add_row(
            Text(f"{t.tenant}/{one_line(t.name)}"),
            str(t.total),
            str(t.succeeded),
            str(t.failed),
            str(t.total - len(t.state)),
        )
        lines.append(f"\n{t.tenant}/{one_line(t.name)}: summary {summaries.get(t.workflow_id, '')}")
        failed = [sid for sid, s in t.state.items() if s is not JobState.SUCCEEDED]
        for sid in failed[:MAX_FAILED_SHOWN]:
            lines.append(f"\n  {sid}: ")
            lines.append(t.reason(sid), style="red")
        if len(failed) > MAX_FAILED_SHOWN:
            lines.append(f"\n  … and {len(failed) - MAX_FAILED_SHOWN} more failed (see summary)")
    return Group(table, lines)


MAX_FAILED_SHOWN = 10
