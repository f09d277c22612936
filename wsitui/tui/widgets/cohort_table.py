"""A cohort workflow's slides as a table: one row per slide, sortable and filterable.

Columns: slide, its metadata (from the cohort CSV), the state of each template job, the
chain's progress, cells, cells per mm² of tissue, time and the error. `t` sorts by the next
column, `T` reverses (a click on a header sorts by it too); the app's `/` filter keeps the
slides whose id, path, metadata, states or error contain the text. `enter` opens the
highlighted slide's job detail (its failed or running job, else its last one), and every job
key of the main screen (`v` viewer, `y` copy path, `r` retry, ...) acts on that job.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from wsitui.core.records import whole_percent
from wsitui.session.cohort_rows import SlideRow
from wsitui.session.cohort_tracker import duration

STATE_STYLE = {
    "SUCCEEDED": ("done", "green"),
    "RUNNING": ("running", "cyan"),
    "FAILED": ("failed", "bold red"),
    "CANCELED": ("canceled", "magenta"),
    "BLOCKED": ("blocked", "red dim"),
    "PENDING": ("pending", "yellow"),
    "HELD": ("held", "yellow dim"),  # not started by the user: `s`/`S` starts it
}
STATE_ORDER = {
    s: i
    for i, s in enumerate(
        ("FAILED", "CANCELED", "BLOCKED", "RUNNING", "PENDING", "HELD", "SUCCEEDED")
    )
}
ERROR_WIDTH = 30  # the least the error column shows; it takes what the terminal has left
FIXED = (("progress", "progress"), ("cells", "cells"), ("density", "cells/mm²"), ("time", "time"))


def _state(state: str) -> Text:
    word, style = STATE_STYLE.get(state, (state.lower(), ""))
    return Text(word, style=style)


def _num(value: float | None, fmt: str) -> Text:
    return Text("" if value is None else format(value, fmt), justify="right")


def shown_error(row: SlideRow) -> str:
    """A slide's error as its row shows it: its own path becomes its file name (the row is the
    slide's already, and the column is short: it read "mask: '/data/lab/scans/2024/…")."""
    error = row.error or ""
    name = row.path.replace("\\", "/").rsplit("/", 1)[-1]
    return error.replace(row.path, name) if row.path and name else error


def with_held(row: SlideRow, held: Collection[str]) -> SlideRow:
    """The row with its jobs that are not started yet as HELD (the stored state is PENDING)."""
    jobs = {
        key: "HELD" if state == "PENDING" and row.job_ids.get(key) in held else state
        for key, state in row.jobs.items()
    }
    return row if jobs == row.jobs else row.model_copy(update={"jobs": jobs})


def row_matches(row: SlideRow, text: str) -> bool:
    """The `/` filter on a slide: its id, path, metadata, chain and job states, or error."""
    if not text:
        return True
    hay = [row.slide_id, row.path, row.state, row.error or "", *row.meta.values()]
    hay += [STATE_STYLE.get(s, (s,))[0] for s in row.jobs.values()] + list(row.jobs.values())
    return any(text in h.lower() for h in hay)


class CohortTable(DataTable[Any]):
    BINDINGS = [
        Binding("t", "sort_next", "Sort"),
        Binding("T", "sort_reverse", "Reverse sort", show=False),
    ]
    DEFAULT_CSS = """
    CohortTable { height: 1fr; border: round $primary-darken-2; }
    CohortTable:focus { border: round $accent; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.sort_key = "slide"
        self.reverse = False
        self._rows: list[SlideRow] = []
        self._columns: tuple[tuple[str, str], ...] = ()
        self._order: list[str] = []  # slide ids as shown
        self._cells: dict[str, tuple[Any, ...]] = {}
        self._filter = ""
        self._now = 0.0
        self._error_width = ERROR_WIDTH
        self._keep: str | None = None  # the slide to keep the cursor on across a relayout

    # ---- data --------------------------------------------------------------------------------
    def show(
        self,
        rows: Sequence[SlideRow],
        template: Sequence[str],
        meta: Sequence[str],
        *,
        filter_text: str = "",
        now: float = 0.0,
        held: Collection[str] = (),
    ) -> None:
        """`held`: the ids of jobs not started yet; their cells say "held", not "pending"
        (a cohort from a config opened all "pending" and nothing on screen said to start it)."""
        if held:
            rows = [with_held(row, held) for row in rows]
        self._rows, self._filter, self._now = list(rows), filter_text.lower(), now
        columns = (
            ("slide", "slide"),
            *((f"meta:{m}", m) for m in meta),
            *((f"job:{k}", k) for k in template),
            *FIXED,
            ("error", "error"),
        )
        self._set_columns(columns)
        self._paint()

    def _set_columns(self, columns: tuple[tuple[str, str], ...]) -> None:
        if columns == self._columns:
            return
        selected = self.selected_slide
        self.clear(columns=True)
        self._columns = columns
        for key, label in columns:
            self.add_column(self._label(key, label), key=key)
        self._order, self._cells = [], {}
        self._keep = selected

    def _label(self, key: str, label: str) -> Text:
        if key != self.sort_key:
            return Text(label)
        return Text.assemble(label, (" ▼" if self.reverse else " ▲", "bold"))

    def _matches(self, row: SlideRow) -> bool:
        return row_matches(row, self._filter)

    def _time(self, row: SlideRow) -> float | None:
        if row.finished or row.started_at is None:
            return row.run_s
        return max(0.0, self._now - row.started_at) if self._now else row.run_s

    def _sort_value(self, row: SlideRow) -> tuple[int, Any]:
        key = self.sort_key
        if key == "slide":
            value: Any = row.slide_id
        elif key.startswith("meta:"):
            value = row.meta.get(key[5:], "")
        elif key.startswith("job:"):
            value = STATE_ORDER.get(row.jobs.get(key[4:], "PENDING"), 9)
        elif key == "progress":
            value = row.progress
        elif key == "cells":
            value = row.cells
        elif key == "density":
            value = row.cells_per_mm2
        elif key == "time":
            value = self._time(row)
        else:
            value = row.error or ""
        missing = value is None or value == ""
        return (1 if missing else 0, value if not missing else 0)

    def _values(self, row: SlideRow) -> tuple[Any, ...]:
        out: list[Any] = []
        for key, _ in self._columns:
            if key == "slide":
                out.append(Text(row.slide_id, no_wrap=True, overflow="ellipsis"))
            elif key.startswith("meta:"):
                out.append(Text(row.meta.get(key[5:], "")))
            elif key.startswith("job:"):
                out.append(_state(row.jobs.get(key[4:], "")) if key[4:] in row.jobs else Text(""))
            elif key == "progress":
                pct = _num(whole_percent(row.progress), "d").append("%")
                out.append(pct if row.jobs else Text(""))
            elif key == "cells":
                out.append(_num(row.cells, ","))
            elif key == "density":
                out.append(_num(row.cells_per_mm2, ",.0f"))
            elif key == "time":
                t = self._time(row)
                out.append(Text("" if t is None else duration(t), justify="right"))
            else:
                out.append(Text(shown_error(row), style="red", no_wrap=True))  # cut in _paint
        return tuple(out)

    def _widths(self, shown: Sequence[tuple[Any, ...]]) -> dict[str, int]:
        """Each column's width for the coming paint: its widest cell among the rows it will show
        or its header with the sort arrow, whichever is wider; the error column gets what the
        others leave (at least ERROR_WIDTH, and no more than its longest error needs).

        It read the widths the last paint had measured: right after a sort the header's arrow
        was not yet counted and the table came out 2 columns wider than the terminal."""
        widths: dict[str, int] = {}
        for i, (key, label) in enumerate(self._columns):
            cells = [cell.cell_len for cell in (row[i] for row in shown) if isinstance(cell, Text)]
            widths[key] = max([self._label(key, label).cell_len, *cells])
        pad = 2 * self.cell_padding
        region = self.content_region
        bar = self.styles.scrollbar_size_vertical if self._needs_bar(len(shown), region) else 0
        others = sum(w + pad for key, w in widths.items() if key != "error")
        self._error_width = max(ERROR_WIDTH, region.width - bar - others - pad)
        widths["error"] = min(widths["error"], self._error_width)
        return widths

    def _needs_bar(self, rows: int, region: Region) -> bool:
        """Whether the rows will overflow the height, so a vertical scrollbar takes a width."""
        overflow = self.styles.overflow_y
        height = rows + (self.header_height if self.show_header else 0)
        return overflow == "scroll" or (overflow == "auto" and height > region.height)

    def _apply_widths(self, widths: dict[str, int]) -> None:
        """Fix each column at its width (DataTable's own measure would grow a column on its
        next idle, after this paint had shared out the terminal)."""
        changed = False
        for key, column in self.columns.items():
            width = widths[str(key.value)]
            if column.auto_width or column.width != width:
                column.auto_width, column.width, changed = False, width, True
        if changed:  # as DataTable does when its cell padding changes
            total = sum(column.get_render_width(self) for column in self.columns.values())
            self.virtual_size = Size(total, self.virtual_size.height)
            self._clear_caches()
            self.refresh()

    def on_resize(self) -> None:
        if self._rows:
            self._paint()

    def _paint(self) -> None:
        shown = [r for r in self._rows if self._matches(r)]
        shown.sort(key=self._sort_value, reverse=self.reverse)
        if self.reverse:  # missing values last in both directions
            shown.sort(key=lambda r: self._sort_value(r)[0])
        order = [r.slide_id for r in shown]
        values = {r.slide_id: self._values(r) for r in shown}
        self._apply_widths(self._widths(list(values.values())))
        for cells in values.values():  # the error whole in the job detail
            cells[-1].truncate(self._error_width, overflow="ellipsis")
        if order != self._order:
            selected = self.selected_slide or self._keep
            self._keep = None
            self.clear()
            for sid in order:
                self.add_row(*values[sid], key=sid)
            if selected in order:
                self.move_cursor(row=order.index(selected), animate=False)
        else:
            keys = [k for k, _ in self._columns]
            for sid in order:
                old = self._cells.get(sid)
                for i, value in enumerate(values[sid]):
                    if old is None or old[i] != value:
                        self.update_cell(RowKey(sid), ColumnKey(keys[i]), value)
        self._order, self._cells = order, values

    # ---- sorting -----------------------------------------------------------------------------
    def sort_by(self, key: str, *, reverse: bool | None = None) -> None:
        if key == self.sort_key and reverse is None:
            self.reverse = not self.reverse
        else:
            self.sort_key = key
            self.reverse = bool(reverse)
        columns, self._columns = self._columns, ()
        self._set_columns(columns)  # the sorted column's header shows its arrow
        self._paint()

    def action_sort_next(self) -> None:
        keys = [k for k, _ in self._columns]
        if keys:
            nxt = (
                keys[(keys.index(self.sort_key) + 1) % len(keys)]
                if self.sort_key in keys
                else keys[0]
            )
            self.sort_by(nxt, reverse=False)

    def action_sort_reverse(self) -> None:
        self.sort_by(self.sort_key, reverse=not self.reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    @property
    def held_slides(self) -> int:
        """How many slides show a held job (a blocked one reads "blocked", not "held")."""
        return sum(1 for row in self._rows if "HELD" in row.jobs.values())

    # ---- selection ---------------------------------------------------------------------------
    @property
    def selected_slide(self) -> str | None:
        if not self._order or not (0 <= self.cursor_row < len(self._order)):
            return None
        return self._order[self.cursor_row]

    @property
    def selected_job(self) -> str | None:
        """The job the main screen's keys act on: the slide's failed or running job, else its
        last job that ran, else its first."""
        sid = self.selected_slide
        row = next((r for r in self._rows if r.slide_id == sid), None)
        if row is None or not row.job_ids:
            return None
        for wanted in (("FAILED", "CANCELED"), ("RUNNING",)):
            for key, state in row.jobs.items():
                if state in wanted:
                    return row.job_ids[key]
        ran = [k for k, s in row.jobs.items() if s == "SUCCEEDED"]
        return row.job_ids[ran[-1] if ran else next(iter(row.job_ids))]
