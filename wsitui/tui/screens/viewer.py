"""The slide viewer screen: pan and zoom a whole slide with tissue and cell overlays.

Opened by `wsitui view SLIDE` (ViewerApp) or by `v` on a job card. Everything slow runs in
thread workers: opening the slide (and reading its coarsest level), indexing the cells (with a
progress line), reading tiles (SlideView). A file that cannot be used is one line in the status
bar and a notification; the screen stays up.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PIL import Image as PILImage
from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Label, Static
from textual.worker import get_current_worker

from wsitui.slides.errors import SlideError
from wsitui.slides.reader import open_slide
from wsitui.tui.widgets.footer import FitFooter
from wsitui.tui.widgets.line import LiveLine
from wsitui.tui.widgets.preview import ImageProtocol, image_class
from wsitui.tui.widgets.slide_view import SlideView
from wsitui.viewer.cells import CellIndex
from wsitui.viewer.compose import OUTLINE_MIN_PX, Compositor, Frame, minimap
from wsitui.viewer.geojson import OverlayError
from wsitui.viewer.tiles import DEFAULT_CACHE_MB, TileSource
from wsitui.viewer.tissue import TissueOutline
from wsitui.viewer.view import format_um, objective, parse_goto, scale_bar

SIDE_WIDTH = 30  # cells
# Narrower than this, the side panel is hidden and the slide takes every column: at 40x10 it
# left the slide 10 columns and showed no more than its minimap.
NARROW = 2 * SIDE_WIDTH
MINIMAP_ROWS = 8
TARGET_CELL_PX = 24.0  # n / N zoom so a cell spans about this many view px, if smaller
NAME_KEEPS = 16  # cells of a long slide name the status line keeps before its status goes


class GotoDialog(ModalScreen[str | None]):
    DEFAULT_CSS = """
    GotoDialog { align: center middle; }
    GotoDialog > Vertical { width: 56; height: auto; border: round $accent; padding: 0 1;
                            background: $surface; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Go to X,Y in level-0 px, or add um (e.g. 6000,4000 um)")
            yield Input(placeholder="12000,8000", id="goto")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


# The footer's words for the viewer inside wsitui, where they share 80 columns with `? Help`
# and `q Quit` (and ^p, which works without its footer entry)
EMBEDDED_KEYS = {"plus": "In", "equals_sign": "In", "minus": "Out", "n": "Next"}


class ViewerScreen(Screen[None]):
    DEFAULT_CSS = f"""
    ViewerScreen #viewer-status {{ height: 1; width: 1fr; background: $panel; padding: 0 1; }}
    ViewerScreen #viewer-side {{ width: {SIDE_WIDTH}; height: 1fr; padding: 0 1; }}
    ViewerScreen #viewer-minimap {{ width: 100%; height: {MINIMAP_ROWS}; }}
    ViewerScreen #viewer-info {{ height: auto; }}
    ViewerScreen #viewer-cell {{ height: 1fr; }}
    ViewerScreen.-narrow #viewer-side {{ display: none; }}
    """
    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("left,h", "pan(-1, 0)", "Pan", show=False),
        Binding("right,l", "pan(1, 0)", "Pan", show=False),
        Binding("up,k", "pan(0, -1)", "Pan", show=False),
        Binding("down,j", "pan(0, 1)", "Pan", show=False),
        Binding("plus,equals_sign", "zoom(2)", "Zoom +"),
        Binding("minus", "zoom(0.5)", "Zoom -"),
        Binding("0", "fit", "Fit"),
        Binding("g", "goto", "Go to"),
        Binding("t", "toggle('tissue')", "Tissue"),
        Binding("c", "toggle('cells')", "Cells"),
        Binding("n", "step(1)", "Next cell"),
        Binding("N", "step(-1)", "Prev", show=False),
    ]

    def __init__(
        self,
        slide: Path,
        *,
        cells: Path | None = None,
        tissue: Path | None = None,
        protocol: ImageProtocol = "auto",
        cache_mb: float = DEFAULT_CACHE_MB,
        title: str | None = None,
        standalone: bool = False,
    ) -> None:
        super().__init__()
        self.standalone = standalone  # `wsitui view`: esc quits
        if not standalone:
            self._shorten_keys()
        self.slide_path, self.cells_path, self.tissue_path = slide, cells, tissue
        self.protocol = protocol
        self.cache_mb = cache_mb
        self.title_text = title or slide.name
        self.compositor: Compositor | None = None
        self.error: str | None = None
        self.warnings: list[str] = []
        self.cells_note = ""  # "indexing cells … 40%" while the worker runs
        self.hover: int | None = None  # cell under the mouse

    def _shorten_keys(self) -> None:
        """Inside wsitui the app's `? Help` and `q Quit` join the footer: at 80 columns it was
        cut after "Next cel" (with a stray letter in the last column), and neither showed."""
        for key, short in EMBEDDED_KEYS.items():
            found = self._bindings.key_to_bindings.get(key, [])
            self._bindings.key_to_bindings[key] = [replace(b, description=short) for b in found]

    def compose(self) -> ComposeResult:
        # The name is cut first, down to NAME_KEEPS cells, so the status after it shows (a
        # Label wrapped at a space after a long name: the level and the cells' note unseen).
        status = LiveLine(id="viewer-status", sep=" · ", cut_first=True, first_keeps=NAME_KEEPS)
        status.show(Text(f"{self.title_text} · opening…"))
        yield status
        with Horizontal():
            yield SlideView(self.protocol, id="viewer-slide")
            with Vertical(id="viewer-side"):
                yield image_class(self.protocol)(id="viewer-minimap")
                yield Static("", id="viewer-info")
                yield Static("", id="viewer-cell")
        # Whole keys only, as the main app's: Textual's footer cut `wsitui view`'s at 80
        # columns in "n Next cel".
        yield FitFooter(compact=True, show_command_palette=self.standalone)  # ^p works anyway

    @property
    def slide_view(self) -> SlideView:
        return self.query_one(SlideView)

    def on_mount(self) -> None:
        self.slide_view.focus()
        self.set_class(self.app.size.width < NARROW, "-narrow")
        self._open()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < NARROW, "-narrow")

    # ---- loading ----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="viewer-open", exit_on_error=False)
    def _open(self) -> None:
        try:
            reader = open_slide(self.slide_path)
        except SlideError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        try:
            source = TileSource(reader, self.cache_mb)
        except (SlideError, OSError, ValueError) as exc:
            reader.close()
            self.app.call_from_thread(self._failed, f"cannot read slide '{self.slide_path}': {exc}")
            return
        tissue, tissue_error = None, None
        if self.tissue_path is not None:
            try:
                tissue = TissueOutline.load(self.tissue_path, reader.dimensions)
            except OverlayError as exc:
                tissue_error = str(exc)
        comp = Compositor(source, reader.mpp, None, tissue)
        self.app.call_from_thread(self._opened, comp, tissue_error)

    def _failed(self, message: str) -> None:
        self.error = message
        self.query_one("#viewer-status", LiveLine).show(Text(message))
        self.notify(message, severity="error", timeout=10)

    def _opened(self, comp: Compositor, tissue_error: str | None) -> None:
        self.compositor = comp
        if tissue_error:
            self.notify(tissue_error, severity="error", timeout=10)
        if comp.tissue is not None:
            self._warn(comp.tissue.warnings)
        self.slide_view.attach(comp)
        if self.cells_path is not None:
            self.cells_note = "indexing cells…"
            self._index_cells(comp, self.cells_path)
        self._update_status()

    @work(thread=True, exclusive=True, group="viewer-cells", exit_on_error=False)
    def _index_cells(self, comp: Compositor, path: Path) -> None:
        worker = get_current_worker()

        def progress(done: int, total: int) -> None:
            if not worker.is_cancelled:
                pct = min(99, 100 * done // max(1, total))
                self.app.call_from_thread(self._cells_progress, f"indexing cells… {pct}%")

        try:
            index = CellIndex.load(path, comp.source.dimensions, progress)
        except OverlayError as exc:
            self.app.call_from_thread(self._cells_failed, str(exc))
            return
        self.app.call_from_thread(self._cells_ready, index)

    def _cells_progress(self, note: str) -> None:
        self.cells_note = note
        self._update_status()

    def _cells_failed(self, message: str) -> None:
        self.cells_note = "cells: not loaded"
        self.notify(message, severity="error", timeout=10)
        self._update_status()

    def _cells_ready(self, index: CellIndex) -> None:
        assert self.compositor is not None
        self.compositor.cells = index
        self.cells_note = ""
        self._warn(index.warnings)
        self.slide_view.redraw()

    def _warn(self, warnings: list[str]) -> None:
        for w in warnings:
            self.warnings.append(w)
            self.notify(w, severity="warning", timeout=10)

    # ---- display ----------------------------------------------------------------------------
    @on(SlideView.Shown)
    def _shown(self, event: SlideView.Shown) -> None:
        self._update_status(event.frame)
        self._update_minimap(event.frame)

    @on(SlideView.CursorMoved)
    def _cursor(self, event: SlideView.CursorMoved) -> None:
        comp = self.compositor
        if comp is not None and comp.cells is not None and self.slide_view.overlays.cells:
            self.hover = comp.cells.at(event.x, event.y)
        self._update_status()

    def _update_minimap(self, frame: Frame) -> None:
        if self.compositor is None:
            return
        mm = self.query_one("#viewer-minimap")
        cw, ch = self.slide_view.cell_px
        size = (max(1, mm.size.width) * cw, max(1, mm.size.height) * ch)
        mm.image = PILImage.fromarray(minimap(self.compositor.source, frame.view, size))  # type: ignore[attr-defined]

    def _update_status(self, frame: Frame | None = None) -> None:
        frame = frame or self.slide_view.frame
        comp = self.compositor
        sv = self.slide_view
        status = self.query_one("#viewer-status", LiveLine)
        if comp is None or frame is None:
            if self.error is None:
                status.show(Text(f"{self.title_text} · opening…"))
            return
        view = frame.view
        w0, h0 = comp.source.dimensions
        where = "thumbnail" if comp.from_base(frame.level) else comp.source.level_label(frame.level)
        parts = [self.title_text, f"{w0:,}×{h0:,} px", where]
        if not frame.complete:
            parts.append(f"reading {len(frame.missing)} tiles…")
        if self.cells_note:
            parts.append(self.cells_note)
        status.show(Text(" · ".join(parts)))
        lines = []
        if comp.mpp:
            um_px = view.scale * comp.mpp
            lines.append(f"{um_px:.3g} µm/px  ≈{objective(um_px):.2g}×")
            um, px = scale_bar(um_px, view.width / 4)
            bar = "━" * max(1, round(px / sv.cell_px[0]))
            lines.append(f"{bar} {format_um(um)}")
        else:
            lines.append(f"{view.scale:.3g} px per view px (no µm/px in slide)")
        if sv.pointer is not None:
            x, y = view.to_slide(sv.pointer.px, sv.pointer.py)
            lines.append(f"cursor {x:,.0f}, {y:,.0f} px")
            if comp.mpp:
                lines.append(f"       {x * comp.mpp:,.1f}, {y * comp.mpp:,.1f} µm")
        layers = sv.overlays
        if comp.tissue is not None:
            lines.append(f"t tissue: {'on' if layers.tissue else 'off'}")
        if comp.cells is not None:
            mode = {"outlines": "outlines", "density": "density", "hidden": "off"}.get(
                frame.cells_mode, "…"
            )
            lines.append(f"c cells: {mode} ({frame.cells_drawn:,} in view)")
        self.query_one("#viewer-info", Static).update("\n".join(lines))
        self.query_one("#viewer-cell", Static).update(self._cell_text())

    def _cell_text(self) -> str:
        comp = self.compositor
        if comp is None or comp.cells is None:
            return ""
        cell = self.hover if self.hover is not None else self.slide_view.overlays.selected
        if cell is None:
            return f"{len(comp.cells):,} cells · n/N: next/prev"
        info = comp.cells.info(cell)
        rank = int(comp.cells.rank[cell]) + 1
        lines = [f"cell {rank:,}/{len(comp.cells):,}", f"id {info['id']}", f"class {info['class']}"]
        cx, cy = info["centroid_px"]
        lines.append(f"at {cx:,.0f}, {cy:,.0f} px")
        lines += [f"{k}: {v:g}" for k, v in info["measurements"].items()]
        return "\n".join(lines)

    # ---- actions ----------------------------------------------------------------------------
    def action_close(self) -> None:
        if self.standalone:
            self.app.exit()
        else:
            self.app.pop_screen()

    def on_unmount(self) -> None:
        # Textual cancels this screen's workers; a render thread still running finds the
        # source closed and stops (SlideView catches that).
        if self.compositor is not None:
            self.compositor.source.close()

    def action_pan(self, fx: float, fy: float) -> None:
        self.slide_view.pan(fx, fy)

    def action_zoom(self, factor: float) -> None:
        self.slide_view.zoom_at_cursor(factor)

    def action_fit(self) -> None:
        sv = self.slide_view
        if sv.view is not None:
            sv.set_view(sv.view.fitted())

    def action_toggle(self, layer: str) -> None:
        sv = self.slide_view
        setattr(sv.overlays, layer, not getattr(sv.overlays, layer))
        sv.redraw()

    def action_step(self, direction: int) -> None:
        comp, sv = self.compositor, self.slide_view
        if comp is None or sv.view is None:
            return
        if comp.cells is None:
            self.notify("no cells loaded (give --cells, or wait for indexing)", severity="warning")
            return
        if not len(comp.cells):
            self.notify("the cells file holds no cells: its job found none", severity="warning")
            return
        cell = comp.cells.step(sv.overlays.selected, direction, sv.view.centre)
        if cell is None:
            return
        sv.overlays.selected = cell
        self.hover = None
        view = sv.view
        target = comp.cells.median_size / TARGET_CELL_PX
        if comp.cells.median_size / view.scale < OUTLINE_MIN_PX and target > 0:
            view = view.zoom(view.scale / target)
        x, y = (float(v) for v in comp.cells.centroid[cell])
        sv.set_view(view.centred_on(x, y))

    def action_goto(self) -> None:
        def go(text: str | None) -> None:
            sv, comp = self.slide_view, self.compositor
            if not text or sv.view is None or comp is None:
                return
            try:
                x, y = parse_goto(text, comp.mpp)
            except ValueError as exc:
                self.notify(str(exc), severity="error")
                return
            sv.set_view(sv.view.goto(x, y))

        self.app.push_screen(GotoDialog(), go)


class ViewerApp(App[None]):
    """`wsitui view`: the viewer screen on its own (no data dir, no engine)."""

    TITLE = "wsitui view"

    def __init__(self, screen: ViewerScreen) -> None:
        super().__init__()
        self._viewer = screen

    def on_mount(self) -> None:
        self.push_screen(self._viewer)

    def notify(self, message: str, **kwargs: object) -> None:  # type: ignore[override]
        """Plain text: messages carry paths, and '[...]' in one must not be read as markup."""
        kwargs.setdefault("markup", False)
        super().notify(message, **kwargs)  # type: ignore[arg-type]


def run_viewer(
    slide: Path,
    cells: Path | None,
    tissue: Path | None,
    protocol: ImageProtocol = "auto",
    cache_mb: float = DEFAULT_CACHE_MB,
) -> int:
    """`wsitui view SLIDE`: run the viewer on its own until esc / ctrl+q."""
    screen = ViewerScreen(
        slide, cells=cells, tissue=tissue, protocol=protocol, cache_mb=cache_mb, standalone=True
    )
    ViewerApp(screen).run()
    return 0
