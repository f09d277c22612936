"""Top bar: the current tenant and the engine strip (slots, workers, queue, throughput)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from wsitui.core.engine import EngineStats


class TopBar(Static):
    DEFAULT_CSS = """
    TopBar {
        dock: top;
        height: 1;
        background: $panel;
        color: $text;
    }
    """

    _last = ""

    def show(self, tenant: str, stats: EngineStats, tiles_per_s: float) -> None:
        text = Text()
        text.append(" wsitui ", style="bold reverse")
        text.append("  tenant ")
        text.append(tenant, style="bold")
        text.append(" (u)", style="dim")
        text.append(" │ active ")
        text.append(f"{len(stats.active)}/{stats.max_active_users}", style="bold")
        if stats.waiting:
            text.append(" · waiting: ")
            text.append(", ".join(stats.waiting), style="yellow")
        text.append(" │ workers ")
        text.append(f"{stats.running}/{stats.max_workers}", style="bold")
        text.append(" │ queued ")
        text.append(str(stats.queued), style="bold")
        text.append(" │ ")
        # Measured over the last WINDOW_S seconds (tui/rates.py); 0.0 once nothing moves.
        text.append(f"{tiles_per_s:.1f}", style="bold")
        text.append(" tiles/s")
        if text.markup != self._last:  # the bar is asked 10x a second: repaint only changes
            self._last = text.markup
            self.update(text)
