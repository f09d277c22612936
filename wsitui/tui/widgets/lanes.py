"""Branch lanes of one workflow: a column per branch, its jobs as cards in FIFO order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Label

from wsitui.core.records import Job, JobState
from wsitui.core.text import cut_middle, tiles_text
from wsitui.jobs.registry import short_name
from wsitui.tui.badges import Badge
from wsitui.tui.rates import Rates
from wsitui.tui.times import times_text
from wsitui.tui.widgets.bar import FractionBar
from wsitui.tui.widgets.line import LiveLine


def slide_name(slide: str) -> str:
    return slide.replace("\\", "/").rsplit("/", 1)[-1]


TITLE_MARGIN = 6  # a card's corners, a border cell and a blank either side of its title
MIN_KEY = 8  # a cut key keeps this much before its type gives way


def card_title(job: Job, room: int) -> str:
    """`key · type` in `room` cells (0: not laid out yet, the whole title): a key too long
    is cut in its middle, keeping its tail, so keys that share their first 30 characters stay
    apart on a 26-column card (cut at its end by the border, they read the same)."""
    kind = f" · {short_name(job.job_type)}"
    title = f"{job.key}{kind}"
    if room <= 0 or len(title) <= room:
        return title
    if room - len(kind) >= MIN_KEY:
        return cut_middle(job.key, room - len(kind)) + kind
    return cut_middle(job.key, room)


def badge_text(badge: Badge, *, hint: bool = False) -> Text:
    """The badge and its reason (and with `hint`, the key that gets the job going); job text
    is never read as markup (a stage may hold "[")."""
    text = Text(badge.label, style="bold")
    if badge.reason:
        text.append(" ")
        text.append(badge.reason, style="dim")
    if hint and badge.hint:
        text.append(": " if badge.reason else " ")
        text.append(badge.hint, style="bold")
    return text


class JobCard(Vertical, can_focus=True):
    """One job: badge with the reason (a running job's stage), tiles bar, elapsed, ETA and
    counters. It redraws itself from its reactive state: the job snapshot, its badge, and the
    app's clock, which ticks every second, so a running job's elapsed time moves even when no
    progress arrives (a job loading a model must not look hung)."""

    DEFAULT_CSS = """
    JobCard {
        height: 5;
        border: round $panel-lighten-2;
        padding: 0 1;
        margin-bottom: 0;
    }
    JobCard:focus { background: $boost; }
    JobCard .badge { width: 1fr; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    JobCard Horizontal { height: 1; }
    JobCard FractionBar { width: 1fr; }
    JobCard .tiles { width: auto; margin-left: 1; }
    JobCard .times {
        width: 1fr; height: 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis;
    }
    JobCard .times.-hint { color: $text; }
    """

    BINDINGS = [
        Binding("up,k", "move(0, -1)", "Up", show=False),
        Binding("down,j", "move(0, 1)", "Down", show=False),
        Binding("left,h", "move(-1, 0)", "Left", show=False),
        Binding("right,l", "move(1, 0)", "Right", show=False),
        # back to the workflow list in one key, not card by card (the app knows the list)
        Binding("tab,shift+tab", "app.focus_workflows", "Workflows", show=False),
    ]

    job: reactive[Job] = reactive[Job](None, init=False, repaint=False)  # type: ignore[arg-type]
    badge: reactive[Badge] = reactive(Badge("", "", "pending"), init=False, repaint=False)
    now: reactive[float] = reactive(0.0, init=False, repaint=False)

    def __init__(
        self, job: Job, badge: Badge, now: float, column: int, row: int, rates: Rates
    ) -> None:
        super().__init__(id=f"card-{column}-{row}")
        self.column, self.row = column, row
        self.rates = rates
        self._badge = LiveLine(classes="badge")
        self._bar = FractionBar()
        self._tiles = Label(classes="tiles")
        self._times = LiveLine(classes="times", sep=" · ")
        self.set_reactive(JobCard.job, job)
        self.set_reactive(JobCard.badge, badge)
        self.set_reactive(JobCard.now, now)
        self._paint_job()
        self._paint_badge()

    def compose(self) -> ComposeResult:
        yield self._badge
        with Horizontal():
            yield self._bar
            yield self._tiles
        yield self._times

    def watch_job(self) -> None:
        self._paint_job()

    def on_resize(self, event: events.Resize) -> None:
        """Its title is fitted to its width: cut in the middle, not by the border at its end."""
        self.border_title = Text(card_title(self.job, self.outer_size.width - TITLE_MARGIN))

    def watch_badge(self) -> None:
        self._paint_badge()
        self._paint_times()

    def watch_now(self) -> None:
        self._paint_times()

    def _paint_badge(self) -> None:
        b = self.badge
        self._badge.show(badge_text(b))
        self._badge.set_classes(f"badge state-{b.css}")
        for name in [c for c in self.classes if c.startswith("card-")]:
            self.remove_class(name)  # not set_classes: that would drop "-selected"
        self.add_class(f"card-{b.css}")

    def _paint_job(self) -> None:
        job = self.job
        self.border_title = Text(card_title(job, self.outer_size.width - TITLE_MARGIN))
        self.border_subtitle = slide_name(job.slide)
        if job.tiles_total:
            self._bar.fraction = job.tiles_done / job.tiles_total
        else:
            self._bar.fraction = 1.0 if job.state is JobState.SUCCEEDED else 0.0
        self._tiles.update(
            tiles_text(job.tiles_done, job.tiles_total, succeeded=job.state is JobState.SUCCEEDED)
        )
        self._paint_times()

    def _paint_times(self) -> None:
        """The clock line; a held or blocked job (which has no clock yet) shows the key that
        gets it going there instead, so no card width cuts it off the end of the reason."""
        job, now, hint = self.job, self.now, self.badge.hint
        self._times.set_class(bool(hint), "-hint")
        if hint:
            self._times.show(Text(hint))
            return
        rate = self.rates.rate(job.id, now)
        self._times.show(Text(times_text(job, now, self.rates.eta(job, now), rate)))

    def on_focus(self) -> None:
        """A click (or the focus chain) highlights the card; a focus that has moved on by the
        time this runs (keys faster than the focus, see `action_move`) does not."""
        board = next((a for a in self.ancestors if isinstance(a, LaneBoard)), None)
        if board is not None and self.has_focus and board.selected != self.job.id:
            board.select(self.job.id)

    def action_move(self, dx: int, dy: int) -> None:
        """From the highlighted card, not this one: keys that come faster than the focus
        moves all reach the card that had it (`l l l` at once moved one lane)."""
        board = next((a for a in self.ancestors if isinstance(a, LaneBoard)), None)
        if board is not None:
            board.move(dx, dy)


MIN_LANE_WIDTH = 26  # a card of this width keeps its key, type, state and tiles


class LaneColumn(VerticalScroll, can_focus=False):
    DEFAULT_CSS = """
    LaneColumn {
        width: 1fr;
        min-width: 26;
        height: 1fr;
        border-right: vkey $panel-lighten-1;
        padding: 0 1;
    }
    LaneColumn > .lane-title {
        text-style: bold; height: 1; width: 1fr; text-wrap: nowrap; text-overflow: ellipsis;
    }
    LaneColumn > .lane-more { color: $text-muted; height: 1; width: 1fr; text-wrap: nowrap; }
    """


class LaneBoard(Horizontal, can_focus=False):
    """Laid out again when the workflow's jobs change; cards update in place otherwise.

    The board owns the selection: one card of the jobs shown, drawn highlighted, and the only
    job the keys act on. A new layout keeps it on the same job if that job is still shown, else
    on the first card, so it never points at a job that is not on screen."""

    DEFAULT_CSS = """
    LaneBoard { height: 1fr; overflow-x: auto; }
    LaneBoard > .empty { padding: 1 2; color: $text-muted; }
    """

    now: reactive[float] = reactive(0.0, init=False, repaint=False)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.cards: dict[str, JobCard] = {}
        self._grid: list[list[JobCard]] = []
        self.rates = Rates()
        self.selected: str | None = None

    def job_ids(self) -> tuple[str, ...]:
        return tuple(self.cards)

    def layout_ids(self, jobs: Sequence[Job]) -> tuple[str, ...]:
        """The jobs `show_jobs(jobs)` would draw a card for (all, unless lanes are long), in
        the order it would draw them (as `job_ids`): a retried job moves to the back of its
        lane, so a new order is a new layout even when the set of jobs is the same."""
        return tuple(job.id for _, window, _, _ in lane_windows(jobs) for job in window)

    async def show_jobs(
        self, jobs: Sequence[Job], badges: Mapping[str, Badge], empty_text: str
    ) -> None:
        """Lay out lanes: branches in order of first appearance, jobs by lane entry (seq); a
        long lane shows a window of cards around its running job (see `lane_windows`)."""
        had_focus = any(card.has_focus for card in self.cards.values())
        await self.remove_children()
        self.cards, self._grid = {}, []
        if not jobs:
            await self.mount(Label(empty_text, classes="empty"))
            self.select(None)
            return
        columns = []
        for col, (branch, window, before, after) in enumerate(lane_windows(jobs)):
            cards = [
                JobCard(job, badges[job.id], self.now, col, row, self.rates)
                for row, job in enumerate(window)
            ]
            self._grid.append(cards)
            self.cards.update({card.job.id: card for card in cards})
            parts: list[Label | JobCard] = [Label(Text(f"branch {branch}"), classes="lane-title")]
            if before:
                parts.append(Label(f"… {before} earlier, ended", classes="lane-more"))
            parts += cards
            if after:
                parts.append(Label(f"… {after} more; / finds one", classes="lane-more"))
            columns.append(LaneColumn(*parts))
        await self.mount(*columns)
        self._fit_columns(self.size.width)
        keep = self.selected if self.selected in self.cards else self._grid[0][0].job.id
        self.select(keep, focus=had_focus)

    def on_resize(self, event: events.Resize) -> None:
        self._fit_columns(event.size.width)
        card = self.cards.get(self.selected or "")
        if card is not None:  # the card the keys act on stays in sight at the new width
            self.call_after_refresh(card.scroll_visible, animate=False)

    def _fit_columns(self, width: int) -> None:
        """Lanes share the width while each gets MIN_LANE_WIDTH; more lanes than that get a
        fixed width, as many whole ones as fit, and the board scrolls sideways to the rest
        (`1fr` then made each lane as wide as the screen: four lanes at 80 columns showed
        branch A alone, with nothing to say three more existed)."""
        columns = [c for c in self.children if isinstance(c, LaneColumn)]
        if not columns or width <= 0:
            return
        fit = max(1, width // MIN_LANE_WIDTH)
        lane_width = "1fr" if len(columns) <= fit else str(width // fit)
        for column in columns:
            column.styles.width = lane_width

    def select(self, job_id: str | None, *, focus: bool = False) -> None:
        """Highlight `job_id`'s card (None: no card)."""
        if job_id is not None and job_id not in self.cards:
            job_id = None
        # Only the cards that change: restyling every card made each key cost ~0.1 s per
        # hundred cards.
        before = self.cards.get(self.selected or "")
        if before is not None and self.selected != job_id:
            before.set_class(False, "-selected")
        if job_id is not None:
            self.cards[job_id].set_class(True, "-selected")
        self.selected = job_id
        if job_id is not None:
            card = self.cards[job_id]
            if focus:
                card.focus()
            card.scroll_visible(animate=False)

    def update_jobs(self, jobs: Sequence[Job], badges: Mapping[str, Badge]) -> None:
        """New snapshots of the jobs on the board: each card repaints only what changed."""
        for job in jobs:
            card = self.cards.get(job.id)
            if card is not None:
                card.job = job
                card.badge = badges[job.id]

    def watch_now(self, now: float) -> None:
        for card in self.cards.values():
            card.now = now

    def focus_card(self, column: int, row: int) -> None:
        if not self._grid:
            return
        column = max(0, min(column, len(self._grid) - 1))
        cards = self._grid[column]
        if cards:
            self.select(cards[max(0, min(row, len(cards) - 1))].job.id, focus=True)

    def move(self, dx: int, dy: int) -> None:
        """Move the selection (from the app's j/k/h/l when no card has focus)."""
        card = self.cards.get(self.selected or "")
        if card is None:
            self.focus_card(0, 0)
        else:
            self.focus_card(card.column + dx, card.row + dy)


MAX_CARDS = 200  # on the whole board: 2,000 cards took ~30 s to lay out and 2 s a key
MIN_LANE_CARDS = 10


def lane_windows(jobs: Sequence[Job]) -> list[tuple[str, list[Job], int, int]]:
    """Per branch (in order of first appearance): the jobs to draw as cards in FIFO order, and
    how many are left out before and after them. A lane longer than its share of MAX_CARDS
    shows a window from a few jobs before its first open one (running, queued or held; a lane
    runs one at a time), moved in half-window steps so it is not laid out again at every
    job's end; all are shown when they fit."""
    lanes: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        lanes[job.branch].append(job)
    cap = max(MIN_LANE_CARDS, MAX_CARDS // max(1, len(lanes)))
    step = cap // 2
    out = []
    for branch, lane_jobs in lanes.items():
        ordered = sorted(lane_jobs, key=_fifo_key)
        if len(ordered) <= cap:
            out.append((branch, ordered, 0, 0))
            continue
        first_open = next((i for i, j in enumerate(ordered) if not j.state.terminal), len(ordered))
        start = max(0, first_open - 2) // step * step
        start = min(start, len(ordered) - cap)
        window = ordered[start : start + cap]
        out.append((branch, window, start, len(ordered) - start - len(window)))
    return out


def _fifo_key(job: Job) -> tuple[int, float]:
    """Started jobs first (by start time), then queued ones by lane entry, then held ones."""
    if job.state is JobState.PENDING:
        return (1, job.seq) if job.enqueued else (2, job.created_at)
    return (0, job.started_at if job.started_at is not None else float("inf"))
