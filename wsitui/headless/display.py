"""What `wsitui run` shows while it works: rich progress bars on a terminal, plain lines off one."""

from __future__ import annotations

import time
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from wsitui.core.events import (
    Event,
    JobProgress,
    JobStateChanged,
    TenantAdmitted,
    TenantWaiting,
    WorkflowProgress,
)
from wsitui.core.models import Job, JobState, WorkflowStatus
from wsitui.core.text import one_line

STATE_STYLE = {
    "PENDING": "yellow",
    "RUNNING": "cyan",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELED": "magenta",
}


def job_label(job: Job) -> str:
    return f"{job.tenant}/{job.key} [{job.job_type}] ({job.branch})"


def _line(text: str) -> str:
    """Rich markup text made of user data: one line, brackets shown as typed."""
    return escape(one_line(text))


class PlainLines:
    """One line per state change and per 25% of a job's progress: logs and pipes stay short."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._quarter: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
        if isinstance(event, JobStateChanged):
            line = f"{stamp} {job_label(event.job)} {event.job.state}: {one_line(event.reason)}"
        elif isinstance(event, JobProgress) and event.job.tiles_total:
            quarter = 4 * event.job.tiles_done // event.job.tiles_total
            if quarter <= self._quarter.get(event.job.id, 0):
                return
            self._quarter[event.job.id] = quarter
            line = (
                f"{stamp} {job_label(event.job)} tiles {event.job.tiles_done}/"
                f"{event.job.tiles_total}"
            )
        elif isinstance(event, TenantAdmitted):
            line = f"{stamp} tenant {event.tenant} admitted"
        elif isinstance(event, TenantWaiting):
            line = f"{stamp} tenant {event.tenant} waiting for a slot (position {event.position})"
        else:
            return
        print(line, file=self.out, flush=True)


class ProgressBars:
    """Per workflow and per job bars, grouped by tenant (workflows are added tenant by tenant)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=8,
        )
        self._tasks: dict[str, TaskID] = {}

    def add(self, statuses: list[WorkflowStatus]) -> None:
        for status in sorted(statuses, key=lambda s: (s.workflow.tenant, s.workflow.created_at)):
            wf = status.workflow
            self._tasks[wf.id] = self.progress.add_task(
                f"[bold]{wf.tenant}[/] · {_line(wf.name)}",
                total=100,
                state=self._state(status.state),
            )
            for job in status.jobs:
                self._tasks[job.id] = self.progress.add_task(
                    f"   {job.key} [dim]{job.job_type} · {job.branch}[/]",
                    total=job.tiles_total or None,
                    completed=job.tiles_done,
                    state=self._state(job.state),
                )

    @staticmethod
    def _state(state: str) -> str:
        return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"

    def __call__(self, event: Event) -> None:
        if isinstance(event, JobProgress | JobStateChanged):
            task = self._tasks.get(event.job.id)
            if task is None:
                return
            job = event.job
            state = "BLOCKED" if job.blocked and job.state is JobState.PENDING else job.state
            self.progress.update(
                task,
                total=job.tiles_total or None,
                completed=job.tiles_done,
                state=self._state(state) if state != "BLOCKED" else "[red dim]BLOCKED[/]",
            )
        elif isinstance(event, WorkflowProgress):
            task = self._tasks.get(event.workflow.id)
            if task is not None:
                self.progress.update(
                    task, completed=round(event.progress * 100), state=self._state(event.state)
                )
