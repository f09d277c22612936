"""Job detail: state and stage, params, timeline, error, outputs and the job's preview image.

The header lines follow the job live (the app hands the screen each new snapshot, and its
clock ticks every second), and the timeline is read again when the job changes state; the rest
is read when the screen opens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Label, Static

from wsitui.core.records import Job, JobState, Transition
from wsitui.core.text import skipped_tiles, tiles_text
from wsitui.jobs.registry import executor_class
from wsitui.tui.badges import Badge
from wsitui.tui.rates import WINDOW_S, Rates
from wsitui.tui.times import counters_text, elapsed_and_eta, ran_text
from wsitui.tui.widgets.footer import FitFooter
from wsitui.tui.widgets.lanes import badge_text
from wsitui.tui.widgets.line import LiveLine
from wsitui.tui.widgets.preview import ImageProtocol, image_widget

PREVIEW = "preview.png"
MANIFEST = "manifest.json"
STAGES = ("read", "infer", "post", "merge", "write", "total")


def not_there(state: JobState) -> str:
    """Why a job's outputs or preview are not there: "yet" only while it can still write
    them (a failed job's detail read "(none yet)" and "no preview yet", as if they were
    coming). Follows "no preview" or "(none"."""
    if not state.terminal:
        return " yet"
    if state is JobState.SUCCEEDED:
        return ": this job wrote none"
    return f": it {'failed' if state is JobState.FAILED else 'was canceled'}; r retries it"


def result_lines(manifest: dict[str, Any], job_type: str) -> list[str]:
    """What a finished job found, from its manifest: the job type's own line (its executor says
    it), then the shared ones: model, tiles, timings, warnings."""
    lines: list[str] = []
    executor = executor_class(job_type)
    found = executor.found_line(manifest) if executor is not None else ""
    if found:
        lines.append(found)
    model = manifest.get("model")
    if isinstance(model, dict):
        kind = model.get("kind", "?")
        lines.append(
            f"model {model.get('name', '?')} ({kind}) on {model.get('device', '?')}, "
            f"{model.get('precision', '?')}, {model.get('pixel_size', '?')} µm/px"
        )
    tiles = manifest.get("tiles")
    if isinstance(tiles, dict) and "processed" in tiles:
        lines.append(
            f"tiles {tiles['processed']} segmented, {tiles.get('skipped', 0)} without tissue · "
            f"{tiles.get('tile_size')} px + {tiles.get('overlap')} px overlap"
        )
    timings = manifest.get("timings") or {}
    shown = [f"{k} {timings[k]:.1f} s" for k in STAGES if isinstance(timings.get(k), int | float)]
    if shown:
        lines.append("timings: " + " · ".join(shown))
    lines += [f"note: {w}" for w in manifest.get("warnings") or []]
    return lines


def progress_text(job: Job, now: float, rates: Rates | None = None) -> Text:
    """Tiles, then for a running job its elapsed time, ETA, measured rate and stage; for a
    finished one how long it ran (no ETA: it has none); then the counters."""
    tiles = tiles_text(
        job.tiles_done,
        job.tiles_total,
        succeeded=job.state is JobState.SUCCEEDED,
        skipped=skipped_tiles(job.counters),
    )
    text = Text(tiles if tiles.startswith("0 tiles") else f"tiles {tiles}")  # "0 tiles" alone
    if job.state is not JobState.RUNNING:
        text.append(f" · {ran_text(job) or 'not started'}")
    else:
        eta_s = rates.eta(job, now) if rates is not None else None
        rate = rates.rate(job.id, now) if rates is not None else None
        elapsed, eta = elapsed_and_eta(job, now, eta_s)
        text.append(f" · elapsed {elapsed} · ETA {eta}")
        if rate is not None:
            text.append(f" · {rate:.1f} tiles/s over {WINDOW_S:.0f} s")
    if job.state is JobState.RUNNING and job.stage:
        text.append(" · stage: ")
        text.append(job.stage, style="bold")
    counters = {k: v for k, v in job.counters.items() if k != "skipped"}  # said with the tiles
    if counters:
        text.append(" · " + counters_text(counters))
    return text


def timeline_table(transitions: list[Transition]) -> Table:
    """The job's transitions, one row each; a long reason (a failure's error) wraps within the
    screen's width instead of being cut at its edge."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("time", "state", "try"):
        table.add_column(name, no_wrap=True)
    table.add_column("reason", overflow="fold", min_width=12)
    for t in transitions:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.ts))
        table.add_row(stamp, str(t.state), str(t.attempt), Text(t.reason))
    return table


class JobDetailScreen(Screen[None]):
    DEFAULT_CSS = """
    JobDetailScreen VerticalScroll { padding: 0 2; }
    JobDetailScreen .section { text-style: bold; margin-top: 1; color: $accent; }
    JobDetailScreen #timeline { height: auto; }
    JobDetailScreen #progress { height: 2; }
    JobDetailScreen #state { height: auto; }
    JobDetailScreen .preview { width: auto; height: 18; }
    JobDetailScreen .error { color: $error; }
    JobDetailScreen #tail { height: auto; }
    """
    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("p", "preview", "Full-screen preview"),
    ]

    job: reactive[Job] = reactive[Job](None, init=False, repaint=False)  # type: ignore[arg-type]
    badge: reactive[Badge] = reactive(Badge("", "", "pending"), init=False, repaint=False)
    now: reactive[float] = reactive(0.0, init=False, repaint=False)

    def __init__(
        self,
        job: Job,
        badge: Badge,
        timeline: Callable[[], list[Transition] | None],
        results_dir: Path,
        protocol: ImageProtocol,
        *,
        now: float,
        rates: Rates | None = None,
    ) -> None:
        super().__init__()
        self.rates = rates
        self.timeline, self.results_dir, self.protocol = timeline, results_dir, protocol
        self._header = LiveLine(id="header")
        self._state = LiveLine(id="state")
        self._table = Static(id="timeline")
        self.transitions: list[Transition] = []
        self._progress = LiveLine(id="progress")
        self.set_reactive(JobDetailScreen.job, job)
        self.set_reactive(JobDetailScreen.badge, badge)
        self.set_reactive(JobDetailScreen.now, now)
        self._paint()

    def show(self, job: Job, badge: Badge) -> None:
        self.job, self.badge = job, badge

    def action_preview(self) -> None:
        job = self.job
        title = f"{job.key} · {job.slide}"
        self.app.push_screen(
            PreviewScreen(self.results_dir / PREVIEW, self.protocol, title, job.state)
        )

    def watch_job(self, old: Job, new: Job) -> None:
        self._paint()
        if (old.state, old.attempt, old.blocked) != (new.state, new.attempt, new.blocked):
            self._fill_timeline()
        if (old.state, old.attempt) != (new.state, new.attempt) and self.is_mounted:
            # It finished (or failed, or started again) while shown: its error, result,
            # outputs and preview are new, not what they were when the screen opened.
            self.call_later(self._refresh_tail)

    async def _refresh_tail(self) -> None:
        tail = self.query_one("#tail", Vertical)
        await tail.remove_children()
        await tail.mount_all(self._tail_widgets())

    def _fill_timeline(self) -> None:
        transitions = self.timeline()
        if transitions is None:  # the engine has closed (quitting): keep what is shown
            return
        self.transitions = transitions
        self._table.update(timeline_table(self.transitions))

    def watch_badge(self) -> None:
        self._paint()

    def watch_now(self) -> None:
        self._progress.show(progress_text(self.job, self.now, self.rates))

    def _paint(self) -> None:
        job = self.job
        # What the job is, then its state: two lines, so nothing is cut at 80 columns.
        self._header.show(
            Text.assemble((job.key, "bold"), f" · {job.job_type} · branch {job.branch}")
        )
        # The state wraps: a failed job's error is its reason, and at 80 columns it was cut.
        self._state.show(
            Text.assemble(
                badge_text(self.badge, hint=True), (f"  (attempt {job.attempt}, {job.id})", "dim")
            ),
            layout=True,
        )
        self._progress.show(progress_text(job, self.now, self.rates))

    def _result(self) -> list[str]:
        try:
            manifest = json.loads((self.results_dir / MANIFEST).read_text())
        except (OSError, ValueError):
            return []
        return result_lines(manifest, self.job.job_type) if isinstance(manifest, dict) else []

    def _tail_widgets(self) -> list[Widget]:
        """What the job has to show once it ran: its error, what it found, its outputs and its
        preview (read again whenever the job changes state while the screen is open)."""
        job = self.job
        out: list[Widget] = []
        if job.error:
            out += [Label("Error", classes="section"), Static(Text(job.error), classes="error")]
        lines = self._result()
        if lines:
            out += [Label("Result", classes="section"), Static(Text("\n".join(lines)))]
        executor = executor_class(job.job_type)
        link = executor.dashboard_link(job.stage, self.results_dir) if executor else ""
        if link:
            out += [
                Label("Dask", classes="section"),
                Static(Text.assemble("dashboard: ", (link, f"link {link}"))),
            ]
        gap = not_there(job.state)
        files = (
            sorted(p.name for p in self.results_dir.iterdir() if not p.name.startswith("."))
            if self.results_dir.is_dir()
            else []
        )
        out += [
            Label("Outputs", classes="section"),
            Static(
                Text(
                    str(self.results_dir)
                    + ("\n  " + "  ".join(files) if files else f"\n  (none{gap})")
                )
            ),
            Label("Preview", classes="section"),
        ]
        preview = self.results_dir / PREVIEW
        if preview.is_file():
            out.append(image_widget(preview, self.protocol, classes="preview"))
        else:
            out.append(Label(Text(f"no preview{gap}", style="dim")))
        return out

    def compose(self) -> ComposeResult:
        job = self.job
        with VerticalScroll():
            yield self._header
            yield self._state
            yield Static(Text(f"slide: {job.slide}"), id="slide")  # wraps: a path is long
            yield self._progress
            yield Label("Params", classes="section")
            yield Static(
                Text(json.dumps(job.params, indent=2, sort_keys=True) if job.params else "{}")
            )
            yield Label("Timeline", classes="section")
            self._fill_timeline()
            yield self._table
            with Vertical(id="tail"):
                yield from self._tail_widgets()
        yield FitFooter()


class PreviewScreen(Screen[None]):
    DEFAULT_CSS = """
    PreviewScreen { align: center middle; }
    PreviewScreen .preview { width: auto; height: 1fr; }
    PreviewScreen .missing { color: $text-muted; }
    """
    BINDINGS = [Binding("escape,q,p", "app.pop_screen", "Back")]

    def __init__(self, path: Path, protocol: ImageProtocol, title: str, state: JobState) -> None:
        super().__init__()
        self.path, self.protocol, self.title_text = path, protocol, title
        self.state = state

    def compose(self) -> ComposeResult:
        yield Label(Text(self.title_text))
        if self.path.is_file():
            yield image_widget(self.path, self.protocol, classes="preview")
        else:
            yield Label(f"this job has no preview{not_there(self.state)}", classes="missing")
        yield FitFooter()
