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
from wsitui.core.records import JobState
from wsitui.core.text import one_line
from wsitui.headless.display import ProgressBars
from wsitui.session.cohort_tracker import CohortTracker

PLAIN_EVERY_S = 10.0


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
