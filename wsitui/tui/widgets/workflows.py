"""The current tenant's workflows, each a row with its state and progress bar."""

from __future__ import annotations

from collections.abc import Callable

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label, ListItem, ListView

from wsitui.core.records import JobState, WorkflowState, WorkflowStatus, whole_percent
from wsitui.tui.widgets.bar import FractionBar

CohortBar = Callable[[WorkflowStatus], tuple[str, float] | None]


class WorkflowRow(ListItem):
    """Redraws itself whenever it is given a new status snapshot (reactive `status`)."""

    DEFAULT_CSS = """
    WorkflowRow { height: 1; }
    WorkflowRow Horizontal { height: 1; }
    WorkflowRow .wf-name {
        width: 1fr; margin-right: 1; text-wrap: nowrap; text-overflow: ellipsis;
    }
    WorkflowRow .wf-state { width: 10; margin-right: 1; }
    WorkflowRow FractionBar { width: 1fr; max-width: 28; }
    WorkflowRow .wf-percent { width: 5; margin-right: 3; content-align-horizontal: right; }
    """

    status: reactive[WorkflowStatus] = reactive[WorkflowStatus](None, init=False, repaint=False)  # type: ignore[arg-type]

    def __init__(self, status: WorkflowStatus, cohort: CohortBar | None = None) -> None:
        super().__init__()
        self.workflow_id = status.workflow.id
        self._cohort = cohort  # a cohort: its bar counts slides, with an ETA
        # Children exist from the start, so a new status never needs to query for them.
        self._name = RowName(classes="wf-name")
        self._state = Label(classes="wf-state")
        self._bar = FractionBar()
        self._percent = Label(classes="wf-percent")
        self.set_reactive(WorkflowRow.status, status)
        self._paint()

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield self._name
            yield self._state
            yield self._bar
            yield self._percent

    def watch_status(self) -> None:
        self._paint()

    def repaint(self) -> None:
        """Paint again with the same status (a cohort's ETA moves with the clock)."""
        self._paint()

    def _paint(self) -> None:
        status = self.status
        wf = status.workflow
        n = len(status.jobs)
        cohort = self._cohort(status) if self._cohort is not None else None
        jobs = f" · {n} job" + ("s" if n > 1 else "") if n else ""
        keep = f" · {cohort[0]}" if cohort else failed_text(status)
        # Its tenant waits for a slot: its place in line (the engine's, R3); where the whole
        # reason leaves the name no room (80 columns), the place alone ("2nd in line").
        short = f" · {status.reason.split(' for ')[0]}{keep}" if status.reason else keep
        keep = f" · {status.reason}{keep}" if status.reason else keep
        parts = [f" {wf.id}", "" if cohort else jobs]  # a cohort's keep says its slides
        self._name.show(wf.name, parts, keep, short)  # fits, dropping whole parts
        state = "WAITING" if status.reason else str(status.state)
        self._state.update(state)
        self._state.set_classes(f"wf-state state-{state.lower()}")
        # the engine's (core/tally.py: jobs weighted by their tiles), as every face reads it;
        # a cohort's: slides done over slides
        progress = cohort[1] if cohort else status.progress
        self._bar.fraction = progress
        self._percent.update(f"{whole_percent(progress)}%")


class RowName(Label):
    """A workflow row's name, its dim parts (id, job count) and what a glance must not miss
    (its failures, a cohort's slides), fitted to the width it is drawn at: parts that do not
    fit are dropped whole, the id first, then the job count; the failures stay and the name
    is cut with "…" instead. At 80 columns the row read "alpha wf8f933bb6 · 4 jobs · 1…"."""

    def __init__(self, *, classes: str) -> None:
        super().__init__(classes=classes)
        self._text, self._parts, self._keep, self._short = "", list[str](), "", ""

    def show(self, name: str, parts: list[str], keep: str = "", short: str = "") -> None:
        """`short`: a shorter `keep` for a width where `keep` leaves the name no room."""
        self._text, self._parts, self._keep = name, [p for p in parts if p], keep
        self._short = short or keep
        self.refresh()

    def render(self) -> Text:
        width = self.content_size.width or 10_000
        room = width - cell_len(self._keep)
        keep = self._keep if room >= min(MIN_NAME, cell_len(self._text)) else self._short
        return fit_name(self._text, self._parts, keep, width)


MIN_NAME = 8  # a workflow row's name keeps this much before `keep` is cut as well


def fit_name(name: str, parts: list[str], keep: str, width: int) -> Text:
    """`name`, then as many whole `parts` as fit `width` cells (the first dropped first),
    then `keep`: the name gives way to it down to MIN_NAME cells; narrower, the name alone."""
    parts = list(parts)
    while parts and cell_len(name + "".join(parts) + keep) > width:
        parts.pop(0)  # the id, then the job count
    tail = Text("".join(parts) + keep, "dim")
    room = width - tail.cell_len
    if room < min(MIN_NAME, cell_len(name)):  # too narrow for both: the name alone
        tail, room = Text(""), width
    text = Text(name, no_wrap=True, overflow="ellipsis")
    text.truncate(max(room, 1), overflow="ellipsis")
    return text + tail


def failed_text(status: WorkflowStatus) -> str:
    """ " · N failed" when a job failed and the state does not say so (a held or queued job
    keeps the workflow PENDING or RUNNING), else ""."""
    failed = sum(j.state is JobState.FAILED for j in status.jobs)
    if not failed or status.state is WorkflowState.FAILED:
        return ""
    return f" · {failed} failed"


class WorkflowList(ListView):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        # to the highlighted job card (the app knows the board), not the first one
        Binding("tab", "app.focus_board", "Cards", show=False),
        Binding("shift+tab", "app.focus_board(False)", "Cards", show=False),
    ]
    DEFAULT_CSS = """
    WorkflowList { height: auto; max-height: 8; border: round $primary-darken-2; }
    WorkflowList:focus { border: round $accent; }
    """

    def rows(self) -> dict[str, WorkflowRow]:
        return {row.workflow_id: row for row in self.query(WorkflowRow)}
