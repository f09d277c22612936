"""The dashboard: average job latency per minute, busy workers, per-branch queue depth."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Label, Sparkline, Static

from wsitui.core.executor import ClusterStatus
from wsitui.core.metrics import Metrics, MetricsSnapshot
from wsitui.tui.widgets.footer import FitFooter

MINUTES = 30  # also the latency chart's width: a cell a minute like the workers chart, so
# the two charts' minutes line up (it was stretched over the screen, the other 30 cells wide)


class MetricsScreen(Screen[None]):
    DEFAULT_CSS = f"""
    MetricsScreen VerticalScroll {{ padding: 0 2; }}
    MetricsScreen .section {{ text-style: bold; margin-top: 1; color: $accent; }}
    MetricsScreen Sparkline {{ height: 3; width: {MINUTES}; }}
    MetricsScreen #workers {{ height: 1; }}
    """
    BINDINGS = [Binding("escape,q,m", "app.pop_screen", "Back")]

    def __init__(
        self,
        metrics: Metrics,
        now: Callable[[], float],
        depths: Callable[[], dict[str, int]],
        max_workers: int,
        clusters: Callable[[], Sequence[ClusterStatus]] = list,
        snapshot: Callable[[], MetricsSnapshot] | None = None,
    ) -> None:
        super().__init__()
        self.metrics, self.now, self.depths, self.max_workers = metrics, now, depths, max_workers
        self.clusters = clusters  # cheap: no cluster call (Executor.clusters)
        self.snapshot = snapshot  # the numbers /metrics serves: one source for both

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            if self.snapshot is not None:
                yield Label("Now (the numbers --metrics-port serves)", classes="section")
                yield Static(id="now")
            yield Label(f"Average job latency per minute (last {MINUTES} min)", classes="section")
            yield Sparkline([], id="latency")
            yield Label("", id="latency-text")
            yield Label(f"Busy workers per minute (of {self.max_workers})", classes="section")
            yield Static(id="workers")
            yield Label("", id="workers-text")
            yield Label("Queue depth per branch (this tenant)", classes="section")
            yield Static(id="depths")
            yield Label("Dask workers (SEGMENT_CELLS on a cluster)", classes="section")
            yield Static(id="dask")
        yield FitFooter()

    def on_mount(self) -> None:
        self.refresh_data()
        self.set_interval(1.0, self.refresh_data)

    def refresh_data(self) -> None:
        now = self.now()
        latency = self.metrics.latency_per_minute(now, MINUTES)
        workers = self.metrics.workers_per_minute(now, MINUTES)
        self.query_one("#latency", Sparkline).data = latency
        self.query_one("#workers", Static).update(scaled_sparkline(workers, self.max_workers))
        recent = [v for v in latency if v > 0]
        self.query_one("#latency-text", Label).update(
            f"now {latency[-1]:.1f} s · mean of active minutes "
            f"{(sum(recent) / len(recent)) if recent else 0:.1f} s · tiles/s "
            f"{self.metrics.tiles_per_second(now):.0f}"
        )
        self.query_one("#workers-text", Label).update(
            f"now {self.metrics.running}/{self.max_workers} · peak {max(workers):.0f}"
        )
        self.query_one("#depths", Static).update(depths_text(self.depths()))
        self.query_one("#dask", Static).update(dask_text(self.clusters()))
        if self.snapshot is not None:
            self.query_one("#now", Static).update(now_text(self.snapshot()))


def now_text(s: MetricsSnapshot) -> Text:
    """The live engine figures and totals, as the Prometheus endpoint reports them, in lines
    that fit 80 columns: one long line wrapped at 80 ended in "tenants active 1" and began
    the next with "waiting 1"."""
    ended = sum(s.outcomes.values())
    failed = sum(n for (_, state), n in s.outcomes.items() if state == "FAILED")
    lines = [
        [
            f"running {s.running}",
            f"workers busy {s.workers_busy} free {s.workers_free}",
            f"queued {s.queued} (pending {s.pending})",
        ],
        [
            f"tenants active {s.tenants_active} waiting {s.tenants_waiting}",
            *(f"{k} {used}/{cap}" for k, (used, cap) in sorted(s.resources.items())),
        ],
        [
            f"tiles {sum(s.tiles.values()):,}",
            *(f"{total.counter} {n:,}" for total, n in s.totals),
            f"jobs ended {ended:,} ({failed:,} failed)",
        ],
        [f"submissions refused {sum(s.submissions_refused.values()):,}"],
    ]
    return Text("\n".join(" · ".join(parts) for parts in lines))


def dask_text(clusters: Sequence[ClusterStatus]) -> Text:
    """Each cluster in use, then each of its workers with its tiles and tiles/s."""
    if not clusters:
        return Text("no Dask cluster in use", style="dim")
    text = Text()
    for c in clusters:
        text.append(f"{c.address} · {c.tiles_per_s:.1f} tiles/s · {c.dashboard}\n")
        for w in c.workers:
            gpu = "  GPU" if w.gpus else ""
            text.append(
                f"  {w.address}  {w.threads} thr{gpu}  {w.tiles} tiles  {w.tiles_per_s:.2f}/s\n"
            )
    text.rstrip()
    return text


BLOCKS = "▁▂▃▄▅▆▇█"


def scaled_sparkline(values: list[float], top: float) -> Text:
    """One cell per value, its height the value's share of `top` (e.g. max_workers): 1 busy
    worker of 4 is a quarter-high block, not full height as on a self-scaled sparkline."""
    top = top or 1
    text = Text()
    for v in values:
        level = round(7 * min(max(v, 0.0), top) / top)
        text.append(BLOCKS[level], style="bold" if v > 0 else "dim")  # idle: a dim floor
    return text


def depths_text(depths: dict[str, int]) -> Text:
    """One line per lane: its name, a bar scaled to the deepest queue, and the count."""
    if not depths:
        return Text("no lanes yet")
    width = max(len(lane) for lane in depths)
    top = max(depths.values()) or 1
    text = Text()
    for lane, depth in sorted(depths.items()):
        text.append(f"{lane:<{width}} ")
        text.append("█" * round(20 * depth / top) or "·", style="bold")
        text.append(f" {depth}\n")
    text.rstrip()
    return text
