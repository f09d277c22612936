"""The wsitui Textual app: one screen over the embedded engine, driven by engine events.

The engine runs inside a worker on Textual's own event loop; executors do their CPU work in
threads, so the UI never waits on work. The screen is drawn from reactive state: every widget
holds the snapshot it shows (a card its job, badge and clock; a row its workflow status) and
repaints itself when given a new one. Engine events only say which workflows have news; a 10 Hz
`flush` hands those widgets fresh snapshots (so bursts of tile events cost one redraw per job a
tenth of a second), and a 1 Hz tick moves the clock `now`, so a running job's elapsed time moves
even when it reports nothing (loading a model).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from pathlib import Path

import anyio.to_thread
from rich.errors import MarkupError
from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Size
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Input, ListView, Static
from textual.worker import Worker

from wsitui.core.engine import Engine, EngineError, QueueFull, RateLimited
from wsitui.core.events import Event, JobProgress, JobStateChanged, Listener, WorkflowProgress
from wsitui.core.executor import Output
from wsitui.core.metrics import Metrics
from wsitui.core.paths import DataDirInUse
from wsitui.core.records import (
    Job,
    JobSpec,
    JobState,
    WorkflowSpec,
    WorkflowStatus,
    job_id_for,
    whole_percent,
)
from wsitui.session.errors import SessionError
from wsitui.session.job_notes import JobNotes, notes_text
from wsitui.session.session import Session
from wsitui.session.terminal import detach_from_terminal
from wsitui.slides.sample import write_sample_slide
from wsitui.tui.badges import Badge, badges
from wsitui.tui.cohorts import CohortBook
from wsitui.tui.rates import Rates
from wsitui.tui.screens.detail import PREVIEW, JobDetailScreen, PreviewScreen
from wsitui.tui.screens.dialogs import (
    AddJobDialog,
    Devices,
    JobConfirmDialog,
    NewJob,
    NewWorkflowDialog,
    QuitDialog,
    TenantDialog,
)
from wsitui.tui.screens.help import HelpScreen
from wsitui.tui.screens.metrics import MetricsScreen
from wsitui.tui.screens.notes import Note, NotesScreen
from wsitui.tui.widgets.cohort_table import CohortTable, row_matches
from wsitui.tui.widgets.footer import FitFooter
from wsitui.tui.widgets.lanes import LaneBoard
from wsitui.tui.widgets.line import LiveLine
from wsitui.tui.widgets.preview import ImageProtocol
from wsitui.tui.widgets.topbar import TopBar
from wsitui.tui.widgets.workflows import WorkflowList, WorkflowRow, failed_text

MIN_WIDTH, MIN_HEIGHT = 80, 24
EMPTY_TENANT = "n: new workflow · d: demo workflow on a sample slide"
DEMO_SIZE = (4096, 3072)
ALL = "*"  # in the inbox: list the tenant's workflows again (start, tenant switch, new one)
ROWS = "**"  # in the inbox: every workflow row again (this tenant's place in line changed)
# Actions that act on the main screen's selection: hidden and off while another screen is up.
MAIN_ONLY = frozenset(
    {"new_workflow", "add_job", "start_job", "start_all", "cancel_job", "retry_job",
     "rerun_job", "switch_tenant", "details", "preview", "metrics", "demo", "filter",
     "copy_path", "copy_id", "open_results", "notifications", "move", "sort_slides"}
)  # fmt: skip
# The job keys that also act on the job whose detail screen is open: its state line says
# "press s to start", "r retries <upstream>", and the keys did nothing there.
DETAIL_KEYS = frozenset({"start_job", "cancel_job", "retry_job", "rerun_job"})
BIG_COHORT_JOBS = 1000  # a cohort's table repaints at most once a second above this
DEMO_NAME = "tui-demo"  # + a number: never a config's name, never an earlier demo's


STOP_SIGNALS = (signal.SIGHUP, signal.SIGTERM)


class FilterInput(Input):
    """The `/` filter. Its keys are in the footer while it has the focus: the placeholder
    said "(esc clears)", but only until the first letter was typed."""

    BINDINGS = [
        Binding("escape", "app.clear_filter", "Clear"),
        Binding("enter", "submit", "Done"),
    ]


def _is_sort(binding: Binding | tuple[str, ...]) -> bool:
    return isinstance(binding, Binding) and binding.action.startswith("sort_slides")


# `s` or `r` on a job that ended: what it is, and the key that does what was meant
_ENDED = {
    JobState.SUCCEEDED: "succeeded: R runs it again (asks first)",
    JobState.FAILED: "failed: r retries it",
    JobState.CANCELED: "was canceled: r retries it",
}


class WsituiApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "wsitui"
    # The footer shows the everyday keys and always `?` and `q` (it must fit 80 columns);
    # the help screen lists every key.
    BINDINGS = [
        Binding("n", "new_workflow", "New wf"),
        Binding("a", "add_job", "Add job"),
        Binding("s", "start_job", "Start"),
        Binding("S", "start_all", "Start all held jobs", show=False),
        Binding("c", "cancel_job", "Cancel"),
        Binding("r", "retry_job", "Retry"),
        Binding("R", "rerun_job", "Rerun a finished job (new attempt)", show=False),
        Binding("u", "switch_tenant", "Switch tenant", show=False),
        Binding("enter", "details", "Details"),
        Binding("p", "preview", "Full-screen preview", show=False),
        Binding("v", "view_slide", "View the slide with its outputs", show=False),
        Binding("m", "metrics", "Metrics", show=False),
        Binding("slash", "filter", "Filter workflows and jobs", show=False),
        Binding("y", "copy_path", "Copy the job's results path", show=False),
        Binding("Y", "copy_id", "Copy the job's id", show=False),
        Binding("o", "open_results", "Open the results folder", show=False),
        Binding("N", "notifications", "Notifications log", show=False),
        Binding("d", "demo", "Demo workflow on a sample slide", show=False),
        Binding("j", "move(0, 1)", "Next card / workflow", show=False),
        Binding("k", "move(0, -1)", "Previous card / workflow", show=False),
        Binding("h", "move(-1, 0)", "Lane to the left", show=False),
        Binding("l", "move(1, 0)", "Lane to the right", show=False),
        # The cohort table's own t/T (listed under it in the help), from anywhere on the main
        # screen: the title says "t/T sort" while the focus is still in the workflow list.
        Binding("t", "sort_slides", "Sort a cohort's slides", show=False),
        Binding("T", "sort_slides(True)", "Reverse a cohort's sort", show=False),
        Binding("question_mark,f1", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    # The engine's clock, ticked every second. State, not paint: repaint=True would repaint
    # the whole active screen every second (a sixel preview flickered with it).
    now: reactive[float] = reactive(0.0, init=False, repaint=False)

    def __init__(
        self,
        engine: Engine,
        *,
        tenant: str,
        startup: Callable[[Engine], object] | None = None,
        image_protocol: ImageProtocol = "auto",
        sample_dir: Path | None = None,
        listeners: Sequence[Listener] = (),
        metrics: Metrics | None = None,
        session: Session | None = None,
        pick_tenant: bool = False,
        reserved_names: Collection[str] = (),
        catch_signals: bool = False,
    ) -> None:
        super().__init__()
        # `wsitui` itself (not a test): SIGHUP and SIGTERM stop it like a confirmed quit.
        self._catch_signals = catch_signals
        self.signaled: int | None = None  # the stop signal received, if any
        self._hung_up = False  # SIGHUP took the terminal away (its descriptors now /dev/null)
        # True when no tenant was named: open on one that has work if this one has none.
        self._pick_tenant = pick_tenant
        self.reserved_names = set(reserved_names)  # the config's workflow names: never a demo's
        self.notes: list[Note] = []  # every notification, for the log screen (N)
        self.filter_text = ""
        self.rates = Rates()
        self.devices: Devices | None = None  # None: probe the machine (tests give their own)
        self.stopping = 0  # jobs that were running when the user quit (main.py says so)
        self.engine = engine
        self.tenant = tenant
        self.image_protocol = image_protocol
        self.sample_dir = sample_dir or engine.data_dir / "samples"
        self._own_metrics = metrics is None  # a session's Metrics comes among `listeners`
        self.metrics = metrics if metrics is not None else Metrics()
        self.selected_workflow: str | None = None
        self.ready = asyncio.Event()
        # One redraw at a time: the timer and tests both flush, and laying lanes out again
        # awaits while it swaps widgets, so an unguarded second flush would see half a board.
        self._draw_lock = asyncio.Lock()
        self._startup = startup
        self._listeners = listeners  # e.g. the JSONL event log (without a session)
        # The session opens the engine (its listeners, config workflows, metrics endpoint).
        self._session = session
        self._stop = asyncio.Event()
        self._engine_worker: Worker[None] | None = None
        self._inbox: set[str] = {ALL}  # workflow ids with news since the last flush
        self._board_workflow: str | None = None  # whose jobs the lane board shows
        self.job_notes = JobNotes(engine.results_root)
        self.cohorts = CohortBook(engine)  # cohort workflows show a table of slides instead
        self._cohort_shown: tuple[str, str] | None = None  # (workflow, filter) last painted
        self._cohort_painted = 0.0

    # ---- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield TopBar(id="topbar")
        with Vertical(id="main"):
            yield WorkflowList(id="workflows")
            # whole parts: the keys go first; a long name is cut before its counts go
            yield LiveLine(id="lanes-title", sep=" · ", cut_first=True)
            yield LaneBoard(id="lanes")
            yield CohortTable(id="cohort-table")
        # Disabled while hidden: a hidden Input still took the first focus, and every key.
        yield FilterInput(
            placeholder="filter workflows and jobs (esc clears)", id="filter", disabled=True
        )
        yield Static(id="too-small")
        yield FitFooter(compact=True)

    def on_mount(self) -> None:
        # Keep the main screen's widgets: queries go to the *active* screen, which is a dialog
        # or the metrics screen whenever one is open, while flush must still update these.
        self._topbar = self.query_one(TopBar)
        self._wf_list = self.query_one(WorkflowList)
        self._board = self.query_one(LaneBoard)
        self._lanes_title = self.query_one("#lanes-title", LiveLine)
        self._board.rates = self.rates
        self._filter = self.query_one("#filter", Input)  # hidden (app.tcss) until `/`
        self._cohort_table = self.query_one(CohortTable)
        self._cohort_table.display = False
        self._engine_worker = self.run_worker(
            self._run_engine(), name="engine", exit_on_error=False
        )
        self.set_interval(0.1, self.flush)
        self.set_interval(1.0, self.tick)
        self._check_size()
        if self._catch_signals:
            loop = asyncio.get_running_loop()
            for sig in STOP_SIGNALS:
                loop.add_signal_handler(sig, self._on_stop_signal, sig)

    def on_unmount(self) -> None:
        if self._catch_signals:
            loop = asyncio.get_running_loop()
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)

    def _on_stop_signal(self, sig: int) -> None:
        """SIGHUP (the SSH connection or the terminal went away) or SIGTERM (`kill`, a
        service manager): quit as if confirmed. Running jobs stop at their next tile and
        resume at the next start; without this the process died mid-job, which recovery
        counts as a crash of that job (twice early in a run, and the job is failed)."""
        if self.signaled is not None:
            return  # already stopping; the engine's cancel_grace bounds how long
        self.signaled = sig
        if sig == signal.SIGHUP:  # the terminal is gone: the stop must not write to it
            self._hung_up = bool(detach_from_terminal())
        self._quit(True)

    def _exit_after_hangup(self) -> None:
        """The engine has stopped and its state is on disk; the terminal is gone. Textual's
        own teardown (restoring a terminal that no longer exists) could block for good on
        its output thread (seen: a write queue that never drained), so end here."""
        if self._session is not None:
            self._session.close()
        os._exit(128 + signal.SIGHUP)

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size)  # the new size: `self.size` may still be the old one

    def _check_size(self, size: Size | None = None) -> None:
        w, h = size or self.size
        small = w < MIN_WIDTH or h < MIN_HEIGHT
        self.set_class(small, "-too-small")
        self.screen_stack[0].query_one("#too-small", Static).update(
            f"terminal too small: {w}×{h}\nwsitui needs at least {MIN_WIDTH}×{MIN_HEIGHT}"
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Main-screen keys are off (and out of the footer) while another screen is up; a
        job's detail keeps the keys that act on its job (its state line names them)."""
        if action in DETAIL_KEYS and isinstance(self.screen, JobDetailScreen):
            return True
        return action not in MAIN_ONLY or len(self.screen_stack) <= 1

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification, Textual's own too (their markup intact), goes to the log."""
        try:
            shown = Text.from_markup(message).plain if markup else message
        except MarkupError:
            shown = message
        self.notes.append(Note(self.engine.clock(), severity, title, shown))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def tell(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
    ) -> None:
        """The app's own messages: plain text (they carry paths, names and library errors,
        and "[/]" in one would be a MarkupError, a crash, or vanish)."""
        self.notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    # ---- engine ------------------------------------------------------------------------------
    async def _run_engine(self) -> None:
        """Open the engine (through the session, like every face, when there is one) with
        every listener attached first: what it commits while it opens (interrupted jobs
        resumed, poison jobs failed) reaches the event log, the metrics and this screen."""
        own: list[Listener] = [self._on_event, *([self.metrics] if self._own_metrics else [])]
        for listener in own:
            self.engine.bus.add_listener(listener)
        try:
            async with self._open_engine():
                if self._startup is not None:
                    self._startup(self.engine)
                if self._pick_tenant:
                    self.tenant = self._tenant_with_work()
                self.now = self.engine.clock()
                self.ready.set()
                self._warn_skipped()
                await self._stop.wait()
        except SessionError as exc:  # a busy data dir, or the config refused while submitting
            self.exit(return_code=exc.exit_code, message=f"wsitui: {exc.message}")
        except DataDirInUse as exc:
            self.exit(return_code=2, message=str(exc))

    @asynccontextmanager
    async def _open_engine(self) -> AsyncIterator[None]:
        """The session's `open` (config workflows submitted held, the metrics endpoint
        served), else the bare engine with the given listeners attached before it opens."""
        if self._session is not None:
            async with self._session.open(start=False):
                yield
            return
        for listener in self._listeners:
            self.engine.bus.add_listener(listener)
        async with self.engine:
            yield

    def _warn_skipped(self) -> None:
        """Config workflows left out (their stored twin no longer matches): say why, once."""
        if self._session is not None:
            for line in self._session.skipped():
                self.tell(line, title="config workflow skipped", severity="warning", timeout=30)
            for line in self._session.cohort_notes():  # a rerun: new or removed slides
                self.tell(line, title="cohort", timeout=15)

    def _tenant_with_work(self) -> str:
        """This tenant if it has workflows, else the one whose newest workflow is newest."""
        if self.engine.workflows(self.tenant):
            return self.tenant
        newest = {
            t: max(w.workflow.created_at for w in self.engine.workflows(t))
            for t in self.engine.tenants()
        }
        return max(newest, key=lambda t: newest[t]) if newest else self.tenant

    def _badges(self, jobs: Sequence[Job]) -> dict[str, Badge]:
        """Every job's badge, with the engine's admission and resource state (R3, R9)."""
        stats = self.engine.stats()
        out = badges(jobs, stats.waiting, stats.resources)
        for job in jobs:  # a finished job's notes (no tissue found, ...) at a glance
            n = self.job_notes(job)
            if n and not out[job.id].reason:
                out[job.id] = replace(out[job.id], reason=notes_text(n))
        return out

    def _on_event(self, event: Event) -> None:
        """Runs for every engine event: only note which workflow has news (cheap)."""
        if isinstance(event, (JobProgress, JobStateChanged)):
            self.rates.observe(event.job, self.engine.clock())
            self.cohorts.observe(event)
            if event.job.tenant == self.tenant:
                self._inbox.add(event.job.workflow_id)
        elif isinstance(event, WorkflowProgress):
            if event.workflow.tenant == self.tenant:
                self._inbox.add(event.workflow.id)
        elif getattr(event, "tenant", None) == self.tenant:  # its place in line: every row
            self._inbox.add(ROWS)
        elif self.selected_workflow is not None:  # tenant admission: "waiting" badges change
            self._inbox.add(self.selected_workflow)

    def tick(self) -> None:
        """Move the clock: elapsed times, ETAs and the throughput figure follow it."""
        if self.ready.is_set():
            self.now = self.engine.clock()

    def watch_now(self, now: float) -> None:
        self._board.now = now
        self._topbar.show(self.tenant, self.engine.stats(), self.rates.total(now))
        if self._cohort_table.display and self.selected_workflow is not None:
            self._inbox.add(self.selected_workflow)  # its times and ETA follow the clock
        top = self._top_screen()
        if isinstance(top, JobDetailScreen):
            top.now = now

    def _top_screen(self) -> Screen[object] | None:
        """The screen on top, or None while the app exits (its stack already empty: a tick or
        a flush then read `self.screen`, which raised ScreenStackError)."""
        return self.screen_stack[-1] if self.screen_stack else None

    async def flush(self) -> None:
        """Hand the widgets fresh snapshots of what has news (also called directly by tests).
        Nothing once the engine has closed (quitting): its last events, the jobs it stopped,
        arrive after its state is closed, and redrawing them raised a traceback on exit."""
        if not self.ready.is_set() or not self.engine.is_open:
            return
        async with self._draw_lock:
            news, self._inbox = self._inbox, set()
            self._topbar.show(self.tenant, self.engine.stats(), self.rates.total(self.now))
            if news:
                await self._apply(news)
            top = self._top_screen()
            if isinstance(top, QuitDialog):  # jobs ended (or started) since it asked
                top.running_changed(self.engine.stats().running)
            if isinstance(top, JobConfirmDialog):  # the job it asks about moved on?
                with suppress(EngineError):
                    top.job_changed(self.engine.job(self.tenant, top.job.id))

    async def _apply(self, news: set[str]) -> None:
        rows = self._wf_list.rows()
        if ROWS in news:  # this tenant was admitted, or its place in line changed
            news = (news - {ROWS}) | rows.keys() | {self.selected_workflow or ALL}
        if ALL in news or not news <= rows.keys() | {self._board_workflow}:
            await self._list_workflows()
            return
        for wf_id in news & rows.keys():
            rows[wf_id].status = self.engine.workflow(self.tenant, wf_id)
        if self.selected_workflow in news or self._board_workflow != self.selected_workflow:
            await self._show_lanes()
        screen = self._top_screen()
        if isinstance(screen, JobDetailScreen) and screen.job.workflow_id in news:
            status = self.engine.workflow(self.tenant, screen.job.workflow_id)
            jobs = {j.id: j for j in status.jobs}
            if screen.job.id in jobs:
                job_badges = self._badges(status.jobs)
                screen.show(jobs[screen.job.id], job_badges[screen.job.id])

    def _matches(self, status: WorkflowStatus) -> bool:
        """The `/` filter: a workflow is shown if its name or one of its jobs matches."""
        text = self.filter_text
        if text and self.cohorts.is_cohort(status.workflow.id):  # metadata matches too
            return any(row_matches(r, text) for r in self.cohorts.rows(status))
        return not text or text in status.workflow.name.lower() or bool(self._shown(status))

    def _shown(self, status: WorkflowStatus) -> list[Job]:
        """The jobs the board shows: all, or those the filter matches (key, type, slide);
        all of them when the filter matches the workflow's name."""
        text = self.filter_text
        if not text or text in status.workflow.name.lower():
            return list(status.jobs)
        return [
            j
            for j in status.jobs
            if text in j.key.lower() or text in j.job_type.lower() or text in j.slide.lower()
        ]

    async def _list_workflows(self) -> None:
        statuses = [
            self.engine.workflow(self.tenant, w.workflow.id)
            for w in self.engine.workflows(self.tenant)
        ]
        statuses = [st for st in statuses if self._matches(st)]
        ids = [st.workflow.id for st in statuses]
        if self.selected_workflow not in ids:
            self.selected_workflow = ids[-1] if ids else None
        wf_list = self._wf_list
        await wf_list.clear()
        await wf_list.extend(WorkflowRow(st, cohort=self.cohorts.bar) for st in statuses)
        if self.selected_workflow is not None:
            wf_list.index = ids.index(self.selected_workflow)
        await self._show_lanes()

    async def _show_lanes(self) -> None:
        """Lay the selected workflow's lanes out again if its jobs changed, else update cards."""
        board, title = self._board, self._lanes_title
        wf_id = self.selected_workflow
        if wf_id is None:
            if self.filter_text:
                title.show(Text(f"nothing matches {self.filter_text!r} (esc in / clears)"))
            else:
                title.show(Text.assemble((self.tenant, "bold"), " has no workflows yet"))
            # A cohort's table stayed under "nothing matches" (or another tenant's name)
            self._cohort_table.display, board.display = False, True
            self._cohort_shown = None
            if self._board_workflow is not None or not board.children:
                await board.show_jobs([], {}, EMPTY_TENANT)
            self._board_workflow = None
            return
        status = self.engine.workflow(self.tenant, wf_id)
        if self._show_cohort(status):
            return
        jobs = self._shown(status)
        title.show(_lanes_title(status, len(jobs)))
        job_badges = self._badges(status.jobs)
        if self._board_workflow != wf_id or board.job_ids() != board.layout_ids(jobs):
            await board.show_jobs(jobs, job_badges, "a: add a job to this workflow")
            self._board_workflow = wf_id
        else:
            board.update_jobs(jobs, job_badges)

    def _show_cohort(self, status: WorkflowStatus) -> bool:
        """A cohort workflow shows its table of slides in place of the lanes."""
        index = self.cohorts.index(status.workflow.id)
        table = self._cohort_table
        table.display = index is not None
        self._board.display = index is None
        if index is None:
            return False
        # A big cohort's rows cost a few ms per thousand slides: at most once a second while
        # only progress changes (the news waits in the inbox); at once on a new selection or
        # filter, and always for a small cohort.
        key = (status.workflow.id, self.filter_text)
        big = len(status.jobs) > BIG_COHORT_JOBS
        if big and key == self._cohort_shown and time.monotonic() - self._cohort_painted < 1.0:
            self._inbox.add(status.workflow.id)
            return True
        self._cohort_shown, self._cohort_painted = key, time.monotonic()
        rows = self.cohorts.rows(status)
        row = self._wf_list.rows().get(status.workflow.id)
        if row is not None:
            row.repaint()  # slides done and ETA (the status alone may not have changed)
        held = {j.id for j in status.jobs if j.state is JobState.PENDING and not j.enqueued}
        table.show(
            rows, index["template"], index["meta_columns"], filter_text=self.filter_text,
            now=self.now, held=held,
        )  # fmt: skip
        # Its counts and ETA first, the keys last: at 80 columns the workflow row cuts its
        # own copy of them after the id ("0/600 slides…"), and the ETA was nowhere to be seen.
        bar = self.cohorts.bar(status)
        counts = bar[0] if bar else f"{len(rows)} slides"
        if len(table.rows) != len(rows):
            counts += f" · {len(table.rows)} shown"
        if table.held_slides:  # a cohort from a config opens held: say so, and how to start it
            counts += f" · {table.held_slides} held: S starts"
        self._lanes_title.show(
            Text.assemble(
                (status.workflow.name, "bold"),
                f" · {counts} · t/T sort · / filter · enter details · v viewer",
            )
        )
        self._board_workflow = status.workflow.id
        return True

    @on(DataTable.RowSelected, "#cohort-table")
    def _slide_selected(self) -> None:
        self.action_details()

    # ---- selection ---------------------------------------------------------------------------
    @on(ListView.Highlighted, "#workflows")
    def _workflow_highlighted(self, event: ListView.Highlighted) -> None:
        if isinstance(event.item, WorkflowRow) and event.item.workflow_id != self.selected_workflow:
            self.selected_workflow = event.item.workflow_id
            self._inbox.add(self.selected_workflow)  # the board follows at the next flush

    @on(ListView.Selected, "#workflows")
    def _workflow_selected(self) -> None:
        if self._cohort_table.display:
            self._cohort_table.focus()
            return
        self._board.focus_card(0, 0)

    @property
    def selected_job(self) -> str | None:
        """The job the keys act on: the highlighted card, which is always on screen (or the
        job whose detail is open)."""
        if isinstance(self.screen, JobDetailScreen):
            return self.screen.job.id
        if self._board_workflow != self.selected_workflow:
            return None  # the board still shows another workflow: wait for its redraw
        if self._cohort_table.display:
            return self._cohort_table.selected_job
        return self._board.selected

    def _job(self) -> Job | None:
        job_id = self.selected_job
        if job_id is None:
            if self.selected_workflow is None:
                self.tell("no workflow yet: n creates one, d a demo", severity="warning")
            else:
                self.tell("this workflow has no jobs yet: a adds one", severity="warning")
            return None
        try:
            return self.engine.job(self.tenant, job_id)
        except EngineError as exc:
            self.tell(str(exc), severity="error")
            return None

    def action_move(self, dx: int, dy: int) -> None:
        """j/k/h/l: move the card selection (the workflow list handles j/k when focused)."""
        self._board.move(dx, dy)

    def action_focus_board(self, forward: bool = True) -> None:
        """tab / shift+tab in the workflow list: to the highlighted card (Textual's focus
        chain went to the first card and highlighted it instead); a cohort's table, or an
        empty board, the next widget as before."""
        board = self._board
        if board.display and board.selected in board.cards:
            board.select(board.selected, focus=True)
        elif forward:
            self.screen.focus_next()
        else:
            self.screen.focus_previous()

    def action_focus_workflows(self) -> None:
        """tab / shift+tab on a job card: back to the workflow list, one key however many
        cards there are (it walked card by card: 40 presses through a 40-job workflow)."""
        self._wf_list.focus()

    def _engine_call(self, fn: Callable[[], object], done: str | None = None) -> bool:
        """Run an engine command; a refusal is shown in the app, never raised."""
        try:
            fn()
        except (RateLimited, QueueFull) as exc:
            self.tell(str(exc), title="not submitted", severity="warning", timeout=8)
            return False
        except (EngineError, ValueError) as exc:
            self.tell(str(exc), severity="error", timeout=8)
            return False
        if done:
            self.tell(done)
        return True

    def _confirm_then_call(
        self, job: Job, verb: str, question: str, yes: str, fn: Callable[[], object], done: str
    ) -> None:
        """Ask `question` about `job` (the yes button says `yes`); on yes, run the engine
        command, only if the job is still as it was when asked (the dialog follows it)."""
        dialog = JobConfirmDialog(question, yes, job, verb)

        def confirmed(answer: bool | None) -> None:
            if not answer:
                return
            try:
                now = self.engine.job(self.tenant, job.id)
            except EngineError as exc:
                self.tell(str(exc), severity="error")
                return
            if dialog.is_stale(now):  # it changed between the last redraw and the key
                self.tell(f"{job.key} is {now.state} now: nothing to {verb}", severity="warning")
                return
            self._engine_call(fn, done)

        self.push_screen(dialog, confirmed)

    # ---- actions -----------------------------------------------------------------------------
    def action_new_workflow(self) -> None:
        def created(name: str | None) -> None:
            if not name:
                return
            try:
                status = self.engine.submit(self.tenant, WorkflowSpec(name=name), start=False)
            except (RateLimited, QueueFull) as exc:
                self.tell(str(exc), title="not submitted", severity="warning", timeout=8)
                return
            except (EngineError, ValueError) as exc:
                self.tell(str(exc), severity="error")
                return
            self.selected_workflow = status.workflow.id
            self._inbox.add(ALL)  # a workflow without jobs publishes no job event

        self.push_screen(NewWorkflowDialog(self.taken_names()), created)

    def taken_names(self) -> set[str]:
        """This tenant's workflow names: stored, and its config workflows (submitted held when
        the TUI opened, or skipped because their stored twin changed)."""
        config = self._session.config.workflows if self._session is not None else ()
        return {w.workflow.name for w in self.engine.workflows(self.tenant)} | {
            w.name for w in config if w.tenant == self.tenant
        }

    def action_add_job(self) -> None:
        if self.selected_workflow is None:
            self.tell("create a workflow first (n)", severity="warning")
            return
        status = self.engine.workflow(self.tenant, self.selected_workflow)
        branches = list(dict.fromkeys(j.branch for j in status.jobs))
        dialog = AddJobDialog(
            status.workflow.name, [j.key for j in status.jobs], branches, self.devices
        )
        self.push_screen(dialog, self._add_job)

    def _add_job(self, new: NewJob | None) -> None:
        """The dialog has checked everything, the slide included: add the job, select it."""
        if new is None or self.selected_workflow is None:
            return
        workflow_id = self.selected_workflow
        spec = JobSpec(
            id=new.key, type=new.job_type, slide=str(Path(new.slide).resolve()),
            branch=new.branch, depends_on=new.depends_on, params=new.params,
        )  # fmt: skip
        if self._engine_call(
            lambda: self.engine.add_job(self.tenant, workflow_id, spec, start=False)
        ):
            self._board.selected = job_id_for(workflow_id, new.key)  # kept by the redraw
            self.tell(f"added {new.key}: press s to start it")

    def action_start_job(self) -> None:
        job = self._job()
        if job is not None:
            if job.enqueued and job.state is JobState.PENDING:
                status = self.engine.workflow(self.tenant, job.workflow_id)
                badge = self._badges(status.jobs)[job.id]
                if badge.css == "blocked":  # "already queued" said it would run: it cannot
                    self.tell(
                        f"{job.key} is blocked: {badge.reason}; {badge.hint}", severity="warning"
                    )
                else:
                    self.tell(f"{job.key} is already queued")
                return
            if job.state.terminal:  # name the key that does what was meant (R or r)
                self.tell(f"{job.key} {_ENDED[job.state]}", severity="warning")
                return
            self._engine_call(
                lambda: self.engine.start(self.tenant, [job.id]), f"started {job.key}"
            )

    def action_start_all(self) -> None:
        if self.selected_workflow is None:
            self.tell("no workflow selected", severity="warning")
            return
        wf_id = self.selected_workflow
        status = self.engine.workflow(self.tenant, wf_id)
        held = [j for j in status.jobs if j.state is JobState.PENDING and not j.enqueued]
        if not held:
            self.tell(
                f"nothing held in {status.workflow.name}: its jobs are queued, running or done"
            )
            return
        self._engine_call(
            lambda: self.engine.start_workflow(self.tenant, wf_id),
            f"started {len(held)} held job" + ("s" if len(held) > 1 else ""),
        )

    def action_cancel_job(self) -> None:
        job = self._job()
        if job is None:
            return
        if job.state is not JobState.RUNNING:
            self._engine_call(
                lambda: self.engine.cancel(self.tenant, job.id), f"{job.key} canceled"
            )
            return
        self._confirm_then_call(
            job,
            "cancel",
            f"Cancel {job.key}? It is running: it stops at its next tile; the tiles it "
            "finished are kept and r retries it from them (a job that has not stopped "
            f"{self.engine.cancel_grace:g} s later is ended and loses them).",
            "Cancel job",
            lambda: self.engine.cancel(self.tenant, job.id),
            f"{job.key} stops at its next tile",
        )

    def action_retry_job(self) -> None:
        job = self._job()
        if job is not None:
            if job.state is JobState.SUCCEEDED:  # said only what r does not do
                self.tell(f"{job.key} {_ENDED[job.state]}", severity="warning")
                return
            if job.state is JobState.PENDING:
                job = self._blocking_upstream(job)  # its card says "r retries <upstream>"
                if job is None:
                    return
            self._engine_call(lambda: self.engine.retry(self.tenant, job.id), f"retrying {job.key}")

    def _blocking_upstream(self, job: Job) -> Job | None:
        """`r` on a pending job: a BLOCKED one retries the failed or canceled upstream job its
        card names (None, said, when it names none); any other stays itself (the engine says
        why it cannot be retried)."""
        status = self.engine.workflow(self.tenant, job.workflow_id)
        badge = self._badges(status.jobs)[job.id]
        if badge.css != "blocked":
            return job
        up = next((j for j in status.jobs if j.key == badge.upstream), None)
        if up is None:
            self.tell(f"{job.key} is blocked: retry the failed job above it", severity="warning")
        return up

    def action_rerun_job(self) -> None:
        """R: run a finished job again as its next attempt. Failed and canceled jobs are
        retried; a SUCCEEDED one is rerun (`Engine.rerun`) after a confirmation: it goes to the
        back of its lane, its outputs are written anew, and jobs after it that succeeded keep
        theirs."""
        job = self._job()
        if job is None:
            return
        if job.state in (JobState.FAILED, JobState.CANCELED):
            self.action_retry_job()
            return
        if job.state is not JobState.SUCCEEDED:
            self.tell(f"{job.key} is {job.state}: only a finished job can be rerun")
            return
        self._confirm_then_call(
            job,
            "run again",
            f"Run {job.key} again? It succeeded; it runs again as attempt {job.attempt + 1} "
            f"at the back of branch {job.branch} and writes its outputs anew, reusing the tiles "
            "it already did for the same slide and params (only what changed is redone). Jobs "
            "after it that succeeded keep their outputs.",
            "Rerun",
            lambda: self.engine.rerun(self.tenant, job.id),
            f"rerunning {job.key}: attempt {job.attempt + 1}",
        )

    def action_switch_tenant(self) -> None:
        def switched(tenant: str | None) -> None:
            if tenant and tenant != self.tenant:
                self.tenant = tenant
                self.selected_workflow = None
                self._inbox.add(ALL)
                self.tell(f"tenant {tenant}")

        self.push_screen(TenantDialog(self.engine.tenants(), self.tenant), switched)

    def action_details(self) -> None:
        job = self._job()
        if job is None:
            return
        status = self.engine.workflow(self.tenant, job.workflow_id)
        self.push_screen(
            JobDetailScreen(
                job,
                self._badges(status.jobs)[job.id],
                lambda: self.engine.timeline(self.tenant, job.id) if self.engine.is_open else None,
                self.engine.results_dir(job),
                self.image_protocol,
                now=self.now,
                rates=self.rates,
            )
        )

    def action_preview(self) -> None:
        job = self._job()
        if job is not None:
            path = self.engine.results_dir(job) / PREVIEW
            title = f"{job.key} · {job.slide}"
            self.push_screen(PreviewScreen(path, self.image_protocol, title, job.state))

    def action_view_slide(self) -> None:
        """The slide viewer on the selected job's slide, with its workflow's tissue and cells."""
        from wsitui.tui.screens.viewer import ViewerScreen

        job = self._job() if len(self.screen_stack) == 1 else None
        if job is None:
            return
        jobs = self.engine.workflow(self.tenant, job.workflow_id).jobs
        found: dict[Output, Path] = {}
        # The others on the same slide, then the job itself: the last output of a kind wins.
        for other in [*(j for j in jobs if j.slide == job.slide and j.id != job.id), job]:
            executor = self.engine.executors.get(other.job_type)
            for kind, name in executor.outputs.items() if executor is not None else ():
                path = self.engine.results_dir(other) / name
                if path.is_file():
                    found[kind] = path
        self.push_screen(
            ViewerScreen(
                Path(job.slide),
                cells=found.get(Output.CELLS),
                tissue=found.get(Output.TISSUE),
                protocol=self.image_protocol,
                title=f"{job.key} · {Path(job.slide).name}",
            )
        )

    def action_metrics(self) -> None:
        def depths() -> dict[str, int]:
            names = {w.workflow.id: w.workflow.name for w in self.engine.workflows(self.tenant)}
            return {
                f"{names.get(wf, wf)}/{branch}": n
                for (wf, branch), n in self.engine.queue_depths(self.tenant).items()
            }

        self.push_screen(
            MetricsScreen(
                self.metrics,
                self.engine.clock,
                depths,
                self.engine.stats().max_workers,
                clusters=lambda: [c for e in self.engine.executors.values() for c in e.clusters()],
                snapshot=lambda: self.metrics.snapshot(self.engine),
            )
        )

    def action_filter(self) -> None:
        self._filter.disabled = False
        self._filter.display = True
        self._filter.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip().lower()
        self._inbox.add(ALL)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self._board.focus_card(0, 0)
        if self.focused is self._filter and self.filter_text:
            # nothing matched, so nothing took the focus: enter ("Done") did nothing visible
            # and the next keys (t, s, q...) went on typing into the filter
            self.tell(
                f"nothing matches {self._filter.value.strip()!r}: change the filter, "
                "or esc clears it (keys typed here go to the filter)"
            )

    def action_clear_filter(self) -> None:
        """esc in the filter: clear it, hide it, back to the cards."""
        self._filter.value = ""
        self._filter.display = False
        self._filter.disabled = True
        self._board.focus_card(0, 0)

    def action_copy_path(self) -> None:
        job = self._job()
        if job is not None:
            path = str(self.engine.results_dir(job))
            self.copy_to_clipboard(path)  # OSC 52: works over SSH where the terminal allows it
            self.tell(f"copied {path}", title="clipboard")

    def action_copy_id(self) -> None:
        job = self._job()
        if job is not None:
            self.copy_to_clipboard(job.id)
            self.tell(f"copied {job.id}", title="clipboard")

    def action_open_results(self) -> None:
        job = self._job()
        if job is None:
            return
        path = self.engine.results_dir(job)
        if not path.is_dir():
            self.tell(f"{job.key} has no results yet; they go to {path}")
            return
        opener = system_opener()
        if opener is None:
            self.tell(f"no file opener here (no desktop session): results are in {path}")
            return
        try:
            subprocess.Popen(
                [opener, str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            self.tell(f"{opener} failed ({exc.strerror}): results are in {path}", severity="error")
            return
        self.tell(f"opened {path}")

    def action_notifications(self) -> None:
        self.push_screen(NotesScreen(self.notes))

    def action_sort_slides(self, reverse: bool = False) -> None:
        """t/T outside the cohort table: into the table, then sort it (t did nothing, and said
        nothing, while the focus was in the workflow list)."""
        table = self._cohort_table
        if not table.display:
            lanes = "; this workflow shows lanes" if self.selected_workflow else ""
            self.tell(f"t and T sort a cohort's slide table{lanes}")
            return
        table.focus()
        if reverse:
            table.action_sort_reverse()
        else:
            table.action_sort_next()

    def action_help(self) -> None:
        self.push_screen(
            HelpScreen(
                [b for b in self.BINDINGS if not _is_sort(b)],  # under the table's keys
                sections=[
                    (
                        "in a cohort's slide table",
                        [b for b in CohortTable.BINDINGS if isinstance(b, Binding)],
                    )
                ],
            )
        )

    @work(exclusive=True, group="demo")
    async def action_demo(self) -> None:
        slide = self.sample_dir / "demo.svs"
        if not slide.exists():
            self.tell(f"generating a sample slide at {slide}…")
            slide.parent.mkdir(parents=True, exist_ok=True)
            await anyio.to_thread.run_sync(
                lambda: write_sample_slide(slide, size=DEMO_SIZE, seed=1)
            )
        jobs = (
            JobSpec(id="mask", type="TISSUE_MASK", slide=str(slide), branch="A"),
            JobSpec(
                id="mask-fine", type="TISSUE_MASK", slide=str(slide), branch="A",
                depends_on=("mask",), params={"tile_size": 256},
            ),
            JobSpec(
                id="mask-coarse", type="TISSUE_MASK", slide=str(slide), branch="B",
                params={"tile_size": 1024},
            ),
        )  # fmt: skip
        if "SEGMENT_CELLS" in self.engine.executors:  # nuclei on the tissue the mask found
            jobs += (
                JobSpec(
                    id="cells", type="SEGMENT_CELLS", slide=str(slide), branch="C",
                    depends_on=("mask",),
                ),
            )  # fmt: skip
        name = self.demo_name()
        try:
            status = self.engine.submit(
                self.tenant, WorkflowSpec(name=name, jobs=jobs), start=False
            )
        except (RateLimited, QueueFull) as exc:
            self.tell(str(exc), title="not submitted", severity="warning", timeout=8)
            return
        except EngineError as exc:
            self.tell(str(exc), severity="error")
            return
        self.selected_workflow = status.workflow.id
        self.tell(f"demo workflow {name} ready: press S to start all its jobs")

    def demo_name(self) -> str:
        """tui-demo-1, -2…: the first not used by this tenant's workflows nor by the config,
        so a config run again never finds its workflow's name taken by a demo."""
        taken = self.reserved_names | {w.workflow.name for w in self.engine.workflows(self.tenant)}
        n = 1
        while f"{DEMO_NAME}-{n}" in taken:
            n += 1
        return f"{DEMO_NAME}-{n}"

    def action_quit(self) -> None:
        running = self.engine.stats().running if self.ready.is_set() else 0
        if not running:
            self._quit(True)
            return
        self.push_screen(QuitDialog(running), self._quit)

    @work(exclusive=True, group="quit")
    async def _quit(self, confirmed: bool | None) -> None:
        if confirmed:
            running = self.engine.stats().running if self.ready.is_set() else 0
            if running:
                self.stopping = running
                self.tell(
                    f"stopping {running} running job(s) at their next tile…",
                    title="quitting",
                    timeout=30,
                )
            await self.shutdown()
            if self._hung_up:
                self._exit_after_hangup()
            self.exit()

    async def shutdown(self) -> None:
        """Stop the engine: running jobs go back to the head of their lanes, resumable."""
        self._stop.set()
        if self._engine_worker is not None:
            await self._engine_worker.wait()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            if binding.action in ("quit", "help"):
                continue
            yield SystemCommand(
                binding.description, f"key {binding.key}", getattr(self, f"action_{binding.action}")
            )


def system_opener() -> str | None:
    """`open` on macOS, `xdg-open` in a Linux desktop session; None over SSH or headless."""
    if sys.platform == "darwin":
        return shutil.which("open")
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return shutil.which("xdg-open")
    return None


def _lanes_title(status: WorkflowStatus, shown: int) -> Text:
    n = len(status.jobs)
    jobs = f"{shown} of {n} jobs" if shown != n else f"{n} job" + ("" if n == 1 else "s")
    return Text.assemble(
        (status.workflow.name, "bold"),
        f" · {jobs} · {'WAITING' if status.reason else status.state}"
        f" {whole_percent(status.progress)}%{failed_text(status)}",
        f" · {status.reason}" if status.reason else "",
    )
