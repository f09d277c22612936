"""Branch lanes of one workflow: a column per branch, its jobs as cards in FIFO order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Label, ProgressBar

from wsitui.core.models import Job, JobState
from wsitui.tui.badges import badge, elapsed_and_eta


def slide_name(slide: str) -> str:
    return slide.replace("\\", "/").rsplit("/", 1)[-1]


class JobCard(Vertical, can_focus=True):
    """One job: type and slide, state badge with the reason, tiles bar, elapsed and ETA."""

    DEFAULT_CSS = """
    JobCard {
        height: 5;
        border: round $panel-lighten-2;
        padding: 0 1;
        margin-bottom: 0;
    }
    JobCard:focus { border: round $accent; background: $boost; }
    JobCard .badge { width: 1fr; height: 1; }
    JobCard Horizontal { height: 1; }
    JobCard ProgressBar { width: 1fr; height: 1; }
    JobCard ProgressBar Bar { width: 1fr; }
    JobCard .tiles { width: auto; margin-left: 1; }
    JobCard .times { height: 1; color: $text-muted; }
    """

    BINDINGS = [
        Binding("up", "move(0, -1)", "Up", show=False),
        Binding("down", "move(0, 1)", "Down", show=False),
        Binding("left", "move(-1, 0)", "Left", show=False),
        Binding("right", "move(1, 0)", "Right", show=False),
    ]

    class Selected(Message):
        def __init__(self, job_id: str) -> None:
            super().__init__()
            self.job_id = job_id

    def __init__(self, job: Job, column: int, row: int) -> None:
        super().__init__(id=f"card-{column}-{row}")
        self.job = job
        self.column, self.row = column, row

    def compose(self) -> ComposeResult:
        yield Label(classes="badge")
        with Horizontal():
            yield ProgressBar(total=1, show_eta=False, show_percentage=False)
            yield Label(classes="tiles")
        yield Label(classes="times")

    def show(
        self,
        job: Job,
        jobs: Mapping[str, Job],
        *,
        waiting: Sequence[str],
        lane_running: Job | None,
        now: float,
    ) -> None:
        self.job = job
        self.border_title = f"{job.key} · {job.job_type}"
        self.border_subtitle = slide_name(job.slide)
        b = badge(job, jobs, waiting=waiting, lane_running=lane_running)
        label = self.query_one(".badge", Label)
        text = f"[b]{b.label}[/b]" + (f" [dim]{b.reason}[/dim]" if b.reason else "")
        label.update(text)
        label.set_classes(f"badge state-{b.css}")
        self.set_classes(f"card-{b.css}")
        total = job.tiles_total or 1
        done = job.tiles_done if job.tiles_total else (1 if job.state is JobState.SUCCEEDED else 0)
        self.query_one(ProgressBar).update(total=total, progress=done)
        elapsed, eta = elapsed_and_eta(job, now)
        self.query_one(".tiles", Label).update(f"{job.tiles_done}/{job.tiles_total} tiles")
        self.query_one(".times", Label).update(f"{elapsed} · ETA {eta}")

    def on_focus(self) -> None:
        self.post_message(self.Selected(self.job.id))

    def action_move(self, dx: int, dy: int) -> None:
        board = next((a for a in self.ancestors if isinstance(a, LaneBoard)), None)
        if board is not None:
            board.focus_card(self.column + dx, self.row + dy)


class LaneColumn(VerticalScroll, can_focus=False):
    DEFAULT_CSS = """
    LaneColumn {
        width: 1fr;
        min-width: 26;
        height: 1fr;
        border-right: vkey $panel-lighten-1;
        padding: 0 1;
    }
    LaneColumn > .lane-title { text-style: bold; height: 1; width: 1fr; }
    """


class LaneBoard(Horizontal, can_focus=False):
    """Rebuilt when the workflow's jobs change; cards update in place on progress."""

    DEFAULT_CSS = """
    LaneBoard { height: 1fr; overflow-x: auto; }
    LaneBoard > .empty { padding: 1 2; color: $text-muted; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.cards: dict[str, JobCard] = {}
        self._grid: list[list[JobCard]] = []

    async def show_jobs(self, jobs: Sequence[Job], empty_text: str) -> None:
        """Lay out lanes: branches in order of first appearance, jobs by lane entry (seq)."""
        await self.remove_children()
        self.cards, self._grid = {}, []
        if not jobs:
            await self.mount(Label(empty_text, classes="empty"))
            return
        lanes: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            lanes[job.branch].append(job)
        columns = []
        for col, (branch, lane_jobs) in enumerate(lanes.items()):
            ordered = sorted(lane_jobs, key=_fifo_key)
            cards = [JobCard(job, col, row) for row, job in enumerate(ordered)]
            self._grid.append(cards)
            self.cards.update({card.job.id: card for card in cards})
            column = LaneColumn(Label(f"branch {branch}", classes="lane-title"), *cards)
            columns.append(column)
        await self.mount(*columns)

    def focus_card(self, column: int, row: int) -> None:
        if not self._grid:
            return
        column = max(0, min(column, len(self._grid) - 1))
        cards = self._grid[column]
        if cards:
            cards[max(0, min(row, len(cards) - 1))].focus()


def _fifo_key(job: Job) -> tuple[int, float]:
    """Started jobs first (by start time), then queued ones by lane entry, then held ones."""
    if job.state is JobState.PENDING:
        return (1, job.seq) if job.enqueued else (2, job.created_at)
    return (0, job.started_at if job.started_at is not None else float("inf"))
