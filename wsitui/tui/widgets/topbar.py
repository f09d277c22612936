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

    def show(self, tenant: str, stats: EngineStats, tiles_per_s: float | None) -> None:
        """`tiles_per_s`: None while no rate can be known (shown as `–`)."""
        # What does not fit the terminal goes first: the key hint, the name, the throughput.
        width = self.size.width or 80
        for drop in range(4):
            text = self._text(tenant, stats, tiles_per_s, drop)
            if text.cell_len <= width:
                break
        else:  # below 80 columns: whole parts go from the end (it ended in a cut-off " │")
            plain, end = text.plain, len(text.plain)
            while (end := plain.rfind(" │ ", 0, end)) > 0:
                if end + 2 <= width:
                    text = Text.assemble(text[:end], " …")
                    break
        if text.markup != self._last:  # the bar is asked 10x a second: repaint only changes
            self._last = text.markup
            self.update(text)

    @staticmethod
    def _text(tenant: str, stats: EngineStats, tiles_per_s: float | None, drop: int) -> Text:
        text = Text()
        if drop < 2:
            text.append(" wsitui ", style="bold reverse")
            text.append(" ")
        text.append(" tenant ")
        text.append(tenant, style="bold")
        if drop < 1:
            text.append(" (u)", style="dim")
        text.append(" │ active ")
        text.append(f"{len(stats.active)}/{stats.max_active_users}", style="bold")
        if stats.waiting:
            # A count, not the names: at 80 columns a list of tenants pushed workers, queue
            # and throughput off the bar, and another tenant's name is not this one's to see
            # (a waiting tenant's jobs say its place in line).
            text.append(" · ")
            text.append(f"{len(stats.waiting)} waiting", style="yellow")
        text.append(" │ workers ")
        text.append(f"{stats.running}/{stats.max_workers}", style="bold")
        text.append(" │ queued ")
        text.append(str(stats.queued), style="bold")
        if drop < 3:
            text.append(" │ ")
            # Measured over the last WINDOW_S seconds (tui/rates.py); 0.0 once nothing moves,
            # "–" while jobs run (or just ended) that no rate could be measured for.
            text.append("–" if tiles_per_s is None else f"{tiles_per_s:.1f}", style="bold")
            text.append(" tiles/s")
        return text
