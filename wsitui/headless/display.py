"""What `wsitui run` shows while it works: rich progress bars on a terminal, plain lines off one."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TextIO

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from wsitui.core.engine import Engine
from wsitui.core.errors import EngineError
from wsitui.core.events import (
    Event,
    JobProgress,
    JobStateChanged,
    TenantAdmitted,
    TenantWaiting,
    WorkflowProgress,
)
from wsitui.core.phase import JobPhase, job_phases, slot_wait
from wsitui.core.records import Job, JobState, WorkflowState, WorkflowStatus, whole_percent
from wsitui.core.text import one_line, skipped_tiles, tiles_text
from wsitui.session.job_notes import JobNotes

STATE_STYLE = {
    "PENDING": "yellow",
    "WAITING": "yellow",  # a workflow whose tenant waits for a slot (its place follows)
    "RUNNING": "cyan",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELED": "magenta",
}


def job_label(job: Job, workflow: str = "") -> str:
    """`tenant/workflow · job [TYPE] (branch)`; without the workflow's name, `tenant/job ...`."""
    where = (
        f"{job.tenant}/{one_line(workflow)} · {job.key}" if workflow else f"{job.tenant}/{job.key}"
    )
    return f"{where} [{job.job_type}] ({job.branch})"


def _line(text: str) -> str:
    """Rich markup text made of user data: one line, brackets shown as typed."""
    return escape(one_line(text))


class PlainLines:
    """One line per state change and per 25% of a job's progress: logs and pipes stay short.
    Each job line names its workflow (given `engine`): job ids repeat across workflows, and two
    "t/mask [TISSUE_MASK] (main) FAILED" lines did not say whose mask failed."""

    def __init__(self, out: TextIO, engine: Engine | None = None) -> None:
        self.out = out
        self.engine = engine
        self._quarter: dict[str, int] = {}
        self._names: dict[str, str] = {}  # workflow id -> name (a workflow is never renamed)

    def _label(self, job: Job) -> str:
        name = self._names.get(job.workflow_id)
        if name is None and self.engine is not None:
            try:
                name = self._names[job.workflow_id] = self.engine.workflow(
                    job.tenant, job.workflow_id
                ).workflow.name
            except EngineError:  # not stored (yet): the line without it
                name = ""
        return job_label(job, name or "")

    def __call__(self, event: Event) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
        if isinstance(event, JobStateChanged):
            line = f"{stamp} {self._label(event.job)} {event.job.state}: {one_line(event.reason)}"
        elif isinstance(event, JobProgress) and event.job.tiles_total:
            quarter = 4 * event.job.tiles_done // event.job.tiles_total
            if quarter <= self._quarter.get(event.job.id, 0):
                return
            self._quarter[event.job.id] = quarter
            line = (
                f"{stamp} {self._label(event.job)} tiles {event.job.tiles_done}/"
                f"{event.job.tiles_total}"
            )
        elif isinstance(event, TenantAdmitted):
            line = f"{stamp} tenant {event.tenant} admitted"
        elif isinstance(event, TenantWaiting):
            line = f"{stamp} tenant {event.tenant} waiting for a slot (position {event.position})"
        else:
            return
        print(line, file=self.out, flush=True)


def cells_text(counters: Mapping[str, int]) -> str:
    """The live cell count of a SEGMENT_CELLS job ("" for jobs that count none)."""
    return f"{counters['cells']:,}" if "cells" in counters else ""


def doing_text(job: Job) -> str:
    """What a job is doing, for its bar: a running job's stage and its cell count."""
    parts = [job.stage] if job.state is JobState.RUNNING and job.stage else []
    if "cells" in job.counters:
        parts.append(f"{cells_text(job.counters)} cells")
    return _line(" · ".join(parts))


STOPPED = "stopped before it finished; the same command resumes it"


def summary_table(
    engine: Engine, statuses: list[WorkflowStatus], *, interrupted: bool = False
) -> Group:
    """`wsitui run`'s closing summary, readable at 80 columns: a table of the jobs (no header
    cut, the cell count shown), then each job's output folder or error on a line of its own,
    whole (as a table column it was squeezed to 8 characters); then the notes the jobs'
    manifests left, each once with the jobs that left it (`⚠ slide has no pixel size; ... (a,
    b)`: what the TUI's card counts). After an interrupt a job that could have run says it
    resumes next time, not "waiting for a free worker" as the process exits."""
    table = Table(
        title="wsitui run summary",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("workflow", overflow="fold", ratio=1, min_width=8)
    table.add_column("job", overflow="fold", ratio=1, min_width=6)
    for col in ("state", "tiles", "cells", "time"):
        table.add_column(col, no_wrap=True, min_width=len(col))
    outputs = Text(f"outputs under {one_line(engine.results_root)}:")
    if sum(len(s.jobs) for s in statuses) > FOLD_JOBS:
        return _folded_summary(engine, statuses, table, outputs)
    waiting, resources = engine.stats().waiting, engine.stats().resources
    # Several workflows: each one's outputs under its name. Job ids repeat across workflows
    # (every one may have a `mask`), and "mask: FAILED" alone did not say whose mask failed.
    grouped = len(statuses) > 1
    indent = "\n    " if grouped else "\n  "
    notes = JobNotes(engine.results_root)
    said: dict[str, list[str]] = {}  # note -> the jobs whose manifests left it
    for status in sorted(statuses, key=lambda s: s.workflow.tenant):
        phases = job_phases(status.jobs, waiting, resources)
        if grouped:
            outputs.append(f"\n  {status.workflow.tenant}/{one_line(status.workflow.name)}:")
        for job in status.jobs:
            elapsed = ""
            if job.started_at and job.finished_at:
                elapsed = f"{job.finished_at - job.started_at:.1f}s"
            phase = phases[job.id]
            state = str(job.state)
            if job.state is JobState.SUCCEEDED:
                detail = one_line(
                    engine.results_dir(job).relative_to(engine.results_root.resolve())
                )
            elif job.state is JobState.PENDING:
                state = f"{state} ({phase.phase})"
                detail = one_line(phase.reason)
                if interrupted and phase.phase in (JobPhase.READY, JobPhase.WAITING):
                    detail = STOPPED
            else:
                detail = f"{job.state}: {one_line(job.error or '')}"
            table.add_row(
                Text(f"{status.workflow.tenant}/{one_line(status.workflow.name)}"),
                Text(f"{job.key} ({job.job_type})"),
                Text(state, style=STATE_STYLE.get(str(job.state), "red")),
                tiles_text(
                    job.tiles_done,
                    job.tiles_total,
                    succeeded=job.state is JobState.SUCCEEDED,
                    skipped=skipped_tiles(job.counters),
                ),
                cells_text(job.counters),
                elapsed,
            )
            if detail:
                outputs.append(f"{indent}{job.key}: ")
                outputs.append(detail, style="red" if job.state is JobState.FAILED else "")
            name = f"{status.workflow.tenant}/{one_line(status.workflow.name)} " if grouped else ""
            for note in notes.texts(job):  # what the TUI's card counts (`⚠ 1 note`)
                said.setdefault(one_line(note), []).append(name + job.key)
    if said:  # once per note, naming its jobs: 40 jobs on the fallback said it 40 times
        outputs.append("\nnotes:")
    for note, jobs in said.items():
        more = f" +{len(jobs) - SHOWN_NOTE_JOBS} more" if len(jobs) > SHOWN_NOTE_JOBS else ""
        outputs.append(f"\n  ⚠ {note} ({', '.join(jobs[:SHOWN_NOTE_JOBS])}{more})", style="yellow")
    return Group(table, outputs)


MAX_JOB_BARS = 60  # more jobs than this: a bar per workflow only
FOLD_JOBS = 200  # more jobs than this: the closing summary has a line per workflow
SHOWN_FAILURES = 20  # failed jobs the folded summary names, one line each
SHOWN_NOTE_JOBS = 4  # jobs a note of the closing summary names, then "+N more"


def _folded_summary(
    engine: Engine, statuses: list[WorkflowStatus], table: Table, outputs: Text
) -> Group:
    """The closing summary of thousands of jobs: a row per workflow (its jobs counted by
    state, tiles and cells summed), where the outputs are, and the first failures; as
    `wsitui status` does past 200 jobs (`--verbose` there lists every job)."""
    failures: list[tuple[str, Job]] = []
    for status in sorted(statuses, key=lambda s: s.workflow.tenant):
        counts: dict[str, int] = {}
        where = f"{status.workflow.tenant}/{one_line(status.workflow.name)}"
        for job in status.jobs:
            counts[str(job.state)] = counts.get(str(job.state), 0) + 1
            if job.state in (JobState.FAILED, JobState.CANCELED):
                failures.append((where, job))
        cells = sum(j.counters.get("cells", 0) for j in status.jobs)
        table.add_row(
            Text(where),
            Text(
                f"{len(status.jobs):,} jobs: "
                + ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items()))
            ),
            Text(str(status.state), style=STATE_STYLE.get(str(status.state), "red")),
            tiles_text(
                sum(j.tiles_done for j in status.jobs),
                sum(j.tiles_total for j in status.jobs),
                succeeded=status.state is WorkflowState.SUCCEEDED,
                skipped=sum(skipped_tiles(j.counters) for j in status.jobs),
            ),
            f"{cells:,}" if cells else "",
            "",
        )
        outputs.append(f"\n  {where}: {status.workflow.tenant}/{status.workflow.id}/<job id>/")
    for where, job in failures[:SHOWN_FAILURES]:  # whose job: ids repeat across workflows
        outputs.append(f"\n  {where} · {job.key}: ")
        outputs.append(f"{job.state}: {one_line(job.error or '')}", style="red")
    if len(failures) > SHOWN_FAILURES:
        more = len(failures) - SHOWN_FAILURES
        outputs.append(f"\n  … {more:,} more failed; `wsitui status --verbose` lists every job")
    return Group(table, outputs)


class _CountColumn(ProgressColumn):
    """A job's tiles done of its total ("—" before it knows, as the summary and `wsitui
    status` say; "0 tiles" once it SUCCEEDED with none), a workflow's percent: its bar runs
    0-100, and "5/100" read as 5 of 100 tiles next to its jobs' "26/26"."""

    def render(self, task: Task) -> Text:
        if task.fields.get("percent"):
            return Text(f"{task.percentage:.0f}%", style="progress.download")
        total = 0 if task.total is None else int(task.total)
        text = tiles_text(
            int(task.completed),
            total,
            succeeded=bool(task.fields.get("succeeded")),
            skipped=int(task.fields.get("skipped", 0)),
        )
        return Text(text, style="progress.download")


class _ElapsedColumn(TimeElapsedColumn):
    """A bar's time: its job's (or workflow's), from its start to its end (`_clock`). Rich's
    stops when the count reaches its total: a cells job at 55/55 writing its outputs read
    0:00:48 and stayed there, and the summary said it ran 56.9 s."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        if elapsed is None:
            return Text("-:--:--", style="progress.elapsed")
        return Text(_hms(elapsed), style="progress.elapsed")


class _RemainingColumn(TimeRemainingColumn):
    """Rich's time remaining, except for a workflow with a job running: Rich reads a
    workflow's from its percent's last 30 s, which a short job's end jumps (a workflow read
    0:00:23 left beside its running cells job's 0:01:00) and which never reaches 100 % past a
    failed job (a workflow read 0:06:31 beside its last job's 0:00:33). So a workflow's is that
    of the jobs of it that run when nothing else of it is still to run, and never shorter than
    theirs otherwise; a running job with no estimate yet leaves its workflow's unknown."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[TaskID, Task] = {}  # the Progress's tasks, set once it is made

    def render(self, task: Task) -> Text:
        jobs = [self.tasks[j] for j in task.fields.get("jobs", ()) if j in self.tasks]
        # running: started, not stopped (a job at its last tile still writes its outputs)
        running = [j for j in jobs if j.started and j.stop_time is None]
        if not running or task.finished:
            return super().render(task)
        theirs = [j.time_remaining for j in running]
        to_run = any(j.fields.get("to_run") for j in jobs if j not in running)
        own = task.time_remaining if to_run else 0.0
        if own is None or any(t is None for t in theirs):
            return Text("-:--:--", style="progress.remaining")
        left = max(own, *(t for t in theirs if t is not None))
        return Text(_hms(left), style="progress.remaining")


def _hms(seconds: float) -> str:
    """h:mm:ss, as Rich's own time columns write it."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


def _to_run(job: Job) -> bool:
    """Whether a job not running now will still run in this run (pending, not blocked)."""
    return job.state is JobState.PENDING and not job.blocked


def _width(console: Console, options: ConsoleOptions, cell: RenderableType) -> int:
    """A cell's natural width: a Text's length in cells (8 redraws a second of 60 bars:
    Rich's general measure cost a third more than the redraw itself)."""
    if isinstance(cell, Text):
        return cell.cell_len
    return Measurement.get(console, options, cell).maximum


# Which bars a terminal too short for all of them shows first: what runs, what failed.
_SHOW_FIRST = ("RUNNING", "FAILED", "CANCELED", "BLOCKED", "PENDING", "WAITING", "SUCCEEDED")


def _task_state(task: Task) -> str:
    return _plain(str(task.fields.get("state", "")))


@functools.lru_cache(maxsize=64)
def _plain(markup: str) -> str:
    """A bar's state without its style (a handful of distinct strings, parsed once each)."""
    return Text.from_markup(markup).plain


def _window(tasks: list[Task], rows: int) -> tuple[list[Task], list[Task]]:
    """(bars shown, bars hidden) when `rows` cannot hold them all: the running and failed
    ones first, in their order, one row left for counting the rest. Rows past the terminal's
    last were cropped, whichever they were: a run showed 23 waiting tenants and not the one
    running."""
    if len(tasks) <= rows:
        return tasks, []
    rank = {state: i for i, state in enumerate(_SHOW_FIRST)}
    by_rank = sorted(range(len(tasks)), key=lambda i: rank.get(_task_state(tasks[i]), 4))
    keep = set(by_rank[: max(rows - 1, 0)])
    return [t for i, t in enumerate(tasks) if i in keep], [
        t for i, t in enumerate(tasks) if i not in keep
    ]


def _hidden_text(hidden: list[Task]) -> Text:
    counts: dict[str, int] = {}
    for task in hidden:
        state = _task_state(task)
        counts[state] = counts.get(state, 0) + 1
    order = sorted(counts, key=lambda s: _SHOW_FIRST.index(s) if s in _SHOW_FIRST else 4)
    shown = ", ".join(f"{counts[s]} {s.lower()}" for s in order)
    return Text(f"… {len(hidden)} more: {shown}", style="dim")


class _FitProgress(Progress):
    """Bars whose counts, states and times stay whole in any terminal width.

    Rich squeezed every column evenly: at 80 columns a job read "26… RUNNING 0:… -:-…" and a
    workflow lost its bar and count. Here the numbers keep their width; the job's name and
    what it is doing get the rest (cut with "…"), and the bar narrows below 100 columns."""

    NAME, BAR, DOING = 0, 1, 6  # column indexes (ProgressBars' order)

    def make_tasks_table(self, tasks: Iterable[Task]) -> Table:
        if getattr(self, "live", None) is None:  # Progress.__init__ draws once before it
            return super().make_tasks_table(tasks)
        width = self.console.width
        bar = self.columns[self.BAR]
        if isinstance(bar, BarColumn):
            bar.bar_width = 20 if width >= 100 else 10
        tasks, hidden = _window(list(tasks), self.console.height - 1)
        table = super().make_tasks_table(tasks)
        if hidden:
            table.add_row(*[""] * (len(table.columns) - 1), _hidden_text(hidden))
        options = self.console.options
        natural = [
            max((_width(self.console, options, c) for c in col.cells), default=0)
            for col in table.columns
        ]
        gaps = len(table.columns) - 1  # Progress's grid pads each column by one on its right
        fixed = sum(w for i, w in enumerate(natural) if i not in (self.NAME, self.DOING))
        room = max(width - fixed - gaps - 1, 0)  # one spare: a full last column wraps
        # What it is doing (a cohort's rate and ETA) gets up to half the room, more if the
        # names leave it; the names get the rest.
        doing = min(natural[self.DOING], max(room - natural[self.NAME], room // 2))
        name = max(min(natural[self.NAME], room - doing), 8)
        for index, share in ((self.NAME, name), (self.DOING, max(room - name, 1))):
            column = table.columns[index]
            column.width, column.no_wrap, column.overflow = share, True, "ellipsis"
        return table


# The phases whose reason a job's bar says beside its state, and how.
_SAID = {JobPhase.FAILED: "red", JobPhase.BLOCKED: "dim"}


class ProgressBars:
    """Per workflow and per job bars, grouped by tenant (workflows are added tenant by tenant);
    a job's bar says what it is doing (its stage) and, for SEGMENT_CELLS, the cells so far."""

    def __init__(self, console: Console) -> None:
        self.progress = _FitProgress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            _CountColumn(),
            TextColumn("{task.fields[state]}"),
            _ElapsedColumn(),
            (remaining := _RemainingColumn()),
            TextColumn("{task.fields[doing]}"),
            console=console,
            refresh_per_second=8,
        )
        remaining.tasks = self.progress._tasks  # a workflow's time left reads its jobs'
        self._tasks: dict[str, TaskID] = {}
        self._folded: dict[str, dict[str, str]] = {}  # workflow id -> job id -> state
        # tenant -> its workflows' bars: where "waiting for a slot" is said
        self._rows: dict[str, list[TaskID]] = {}
        self._pending: set[TaskID] = set()  # workflow bars not started yet
        self._place: dict[str, int] = {}  # waiting tenant -> its place in line
        self._tenant: dict[str, str] = {}  # workflow id -> tenant
        self._engine: Engine | None = None  # where a ready job's reason is read (R9)
        self._job_bars: dict[str, list[str]] = {}  # workflow id -> its jobs with a bar
        # job bars that say what their job waits for (or why not)
        self._said_ready: set[str] = set()

    def add(
        self,
        statuses: list[WorkflowStatus],
        waiting: Sequence[str] = (),
        engine: Engine | None = None,
    ) -> None:
        """A bar per workflow and one per job; past MAX_JOB_BARS jobs, or more bars than the
        terminal has rows, a bar per workflow only, counting its jobs by state (3,000 job bars
        took 2 s a redraw, 8 times a second, a core busy drawing what no terminal shows; and
        bars past the terminal's last row were cropped, the running ones among them).
        `waiting`: tenants waiting for a slot, in line order (their workflows' bars say so).
        `engine`: where a ready job's bar reads what it waits for (a worker, the GPU)."""
        self._engine = engine
        jobs = sum(len(s.jobs) for s in statuses)
        rows = self.progress.console.height - 1  # Live keeps the cursor's row
        per_job = jobs <= MAX_JOB_BARS and jobs + len(statuses) <= rows
        for status in sorted(statuses, key=lambda s: (s.workflow.tenant, s.workflow.created_at)):
            wf = status.workflow
            self._tenant[wf.id] = wf.tenant
            if not per_job:
                self._folded[wf.id] = {j.id: str(j.state) for j in status.jobs}
            self._tasks[wf.id] = self.progress.add_task(
                f"[bold]{wf.tenant}[/] · {_line(wf.name)}",
                start=status.state is WorkflowState.RUNNING,
                total=100,
                percent=True,
                state=self._state(status.state),
                doing="" if per_job else self._counts(wf.id),
            )
            self._rows.setdefault(wf.tenant, []).append(self._tasks[wf.id])
            if status.state is WorkflowState.PENDING:
                self._pending.add(self._tasks[wf.id])
            if not per_job:
                continue
            self._job_bars[wf.id] = [job.id for job in status.jobs]
            for job in status.jobs:
                self._tasks[job.id] = task = self.progress.add_task(
                    f"   {job.key} [dim]{job.job_type} · {job.branch}[/]",
                    start=job.state is JobState.RUNNING,
                    total=job.tiles_total or None,
                    completed=job.tiles_done,
                    state=self._state(job.state),
                    doing=doing_text(job),
                    succeeded=job.state is JobState.SUCCEEDED,
                    to_run=_to_run(job),
                    skipped=skipped_tiles(job.counters),
                )
                if job.state.terminal and job.started_at and job.finished_at:
                    self._ran(task, job.finished_at - job.started_at)  # in an earlier run
            self.progress.update(
                self._tasks[wf.id], jobs=tuple(self._tasks[job.id] for job in status.jobs)
            )
        for place, tenant in enumerate(waiting, 1):
            self._waiting(tenant, place)
        self._say_ready()

    def _say_ready(self) -> None:
        """A pending job's bar that is ready says what it waits for, as every face does (core
        `phase`): "waiting for a free worker", or "waiting for the GPU" that another job holds
        (R9); it said nothing. Redone at each job state change (60 job bars at most)."""
        if self._engine is None or not self._engine.is_open:
            return
        stats = self._engine.stats()
        for workflow_id, job_ids in self._job_bars.items():
            try:
                jobs = self._engine.workflow(self._tenant[workflow_id], workflow_id).jobs
            except EngineError:
                continue
            phases = job_phases(jobs, stats.waiting, stats.resources)
            for job_id in job_ids:
                phase = phases.get(job_id)
                if phase is not None and phase.phase is JobPhase.READY:
                    self._said_ready.add(job_id)
                    # Beside PENDING: "for the GPU" (at 80 columns "waiting for the G…" was cut)
                    why = escape(phase.reason.removeprefix("waiting "))
                    self.progress.update(self._tasks[job_id], doing=f"[dim]{why}[/]")
                elif phase is not None and phase.phase in _SAID and phase.reason:
                    # A failed job's error, a blocked one's upstream: its bar read FAILED or
                    # BLOCKED alone until the closing summary (the TUI's card says both).
                    self._said_ready.add(job_id)
                    why = f"[{_SAID[phase.phase]}]{_line(phase.reason)}[/]"
                    self.progress.update(self._tasks[job_id], doing=why)
                elif job_id in self._said_ready and phase is not None:
                    self._said_ready.discard(job_id)
                    if phase.phase is not JobPhase.RUNNING:  # its own event says what it does
                        self.progress.update(self._tasks[job_id], doing="")

    def _waiting(self, tenant: str, place: int | None) -> None:
        """A waiting tenant's workflows not started yet say their place in line (their bars
        read PENDING 0% with no reason while other tenants ran); admitted: said no more.
        A folded bar (a bar per workflow) says it before its jobs' counts."""
        if place:
            self._place[tenant] = place
        else:
            self._place.pop(tenant, None)
        for workflow_id in [w for w, t in self._tenant.items() if t == tenant]:
            self._say_doing(workflow_id)

    def _say_doing(self, workflow_id: str) -> None:
        """A workflow bar's last column: its place in line while its tenant waits and it has
        not started (the place first: a narrow terminal cuts the end), its jobs' counts when
        folded."""
        task = self._tasks[workflow_id]
        place = self._place.get(self._tenant[workflow_id])
        waits = bool(place) and task in self._pending
        parts = [slot_wait(place)] if place and waits else []
        if workflow_id in self._folded:
            parts.append(self._counts(workflow_id))
        self.progress.update(task, doing=" · ".join(parts))
        if task in self._pending:  # not PENDING alone while it waits for a tenant slot
            self.progress.update(task, state=self._state("WAITING" if waits else "PENDING"))

    def _ran(self, task: TaskID, seconds: float) -> None:
        """A bar's time for a job that ended before this run: what it ran, stopped."""
        self.progress.start_task(task)
        self.progress.stop_task(task)
        t = self.progress._tasks[task]  # Rich has no setter for a task's times
        t.start_time = (t.stop_time or 0.0) - max(seconds, 0.0)

    def _clock(self, task: TaskID, running: bool, ended: bool) -> None:
        """A bar's time runs while its job or workflow runs: a waiting one showed the time
        since `wsitui run` began, and a failed one's time kept growing after it ended."""
        t = self.progress._tasks[task]
        if running and (t.start_time is None or t.stop_time is not None):  # again: from now
            t.start_time = t.stop_time = None
            self.progress.start_task(task)
        elif ended and t.start_time is not None and t.stop_time is None:
            self.progress.stop_task(task)

    @staticmethod
    def _state(state: str) -> str:
        return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"

    def _counts(self, workflow_id: str) -> str:
        states = list(self._folded[workflow_id].values())
        done = sum(s == "SUCCEEDED" for s in states)
        text = f"{done}/{len(states)} jobs done · {states.count('RUNNING')} running"
        failed = states.count("FAILED") + states.count("CANCELED")
        return text + (f" · [red]{failed} failed[/]" if failed else "")

    def _job_bar(self, task: TaskID, job: Job) -> None:
        state = "BLOCKED" if job.blocked and job.state is JobState.PENDING else job.state
        self._clock(task, job.state is JobState.RUNNING, job.state.terminal)
        self.progress.update(
            task,
            total=job.tiles_total or None,
            completed=job.tiles_done,
            state=self._state(state) if state != "BLOCKED" else "[red dim]BLOCKED[/]",
            doing=doing_text(job),
            succeeded=job.state is JobState.SUCCEEDED,
            to_run=_to_run(job),
            skipped=skipped_tiles(job.counters),
        )

    def __call__(self, event: Event) -> None:
        if isinstance(event, TenantWaiting):
            self._waiting(event.tenant, event.position)
            return
        if isinstance(event, TenantAdmitted):
            self._waiting(event.tenant, None)
            return
        if isinstance(event, JobStateChanged) and event.job.workflow_id in self._folded:
            states = self._folded[event.job.workflow_id]
            states[event.job.id] = str(event.job.state)
            if event.job.workflow_id in self._tasks:
                self._say_doing(event.job.workflow_id)
            return
        if isinstance(event, JobProgress | JobStateChanged):
            task = self._tasks.get(event.job.id)
            if task is not None:
                self._job_bar(task, event.job)
            if isinstance(event, JobStateChanged):
                self._say_ready()  # a start or an end changes what a ready job waits for
        elif isinstance(event, WorkflowProgress):
            task = self._tasks.get(event.workflow.id)
            if task is not None:
                ended = event.state not in (WorkflowState.PENDING, WorkflowState.RUNNING)
                self._clock(task, event.state is WorkflowState.RUNNING, ended)
                if event.state is not WorkflowState.PENDING and task in self._pending:
                    self._pending.discard(task)
                    self._say_doing(event.workflow.id)
                state = str(event.state)
                if event.state is WorkflowState.PENDING and self._place.get(event.workflow.tenant):
                    state = "WAITING"  # as `_say_doing` says it
                self.progress.update(
                    task, completed=whole_percent(event.progress), state=self._state(state)
                )
