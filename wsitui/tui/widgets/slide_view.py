"""The slide picture: asks the compositor for views and shows them through the preview
image layer (kitty TGP / sixel / half-block, wsitui.tui.widgets.preview).

Keys and mouse only change `self.view` (instant); a thread worker composes the new view from
cached tiles (the coarse level stands in for tiles not read yet), shows it, reads the missing
tiles, and shows the sharp picture. A newer view cancels the older worker; a stale frame is
never shown over a newer one.

View pixels: half-block shows 1 x 2 view px per terminal cell; sixel and kitty show the cell's
size in screen pixels, queried from the terminal by textual-image (ioctl TIOCGWINSZ, then the
CSI 16 t report, then TEXTUAL_CELL_WIDTH/HEIGHT) with its fallback of 10 x 20 px.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image as PILImage
from textual import events, work
from textual.app import ComposeResult
from textual.message import Message
from textual.widget import Widget
from textual.worker import get_current_worker
from textual_image._terminal import get_cell_size

from wsitui.core.text import one_line
from wsitui.tui.widgets.preview import ImageProtocol, image_class
from wsitui.viewer.compose import Compositor, Frame, Layers
from wsitui.viewer.view import PAN_FRACTION, ZOOM_STEP, View

FALLBACK_CELL_PX = (10, 20)  # textual-image's own fallback (a VT340's cell)


def cell_pixels(protocol: ImageProtocol) -> tuple[int, int]:
    """View px per terminal cell (w, h) for this protocol."""
    if protocol == "halfcell":
        return 1, 2
    try:
        size = get_cell_size()
        return (size.width or FALLBACK_CELL_PX[0], size.height or FALLBACK_CELL_PX[1])
    except Exception:  # stdout closed, not a terminal: the stated fallback
        return FALLBACK_CELL_PX


@dataclass
class Cursor:
    px: float  # view px
    py: float


class SlideView(Widget, can_focus=True):
    DEFAULT_CSS = """
    SlideView { width: 1fr; height: 1fr; }
    SlideView > .picture { width: 100%; height: 100%; }
    """

    class Shown(Message):
        """A frame is on screen (sharp when frame.complete)."""

        def __init__(self, frame: Frame) -> None:
            super().__init__()
            self.frame = frame

    class CursorMoved(Message):
        def __init__(self, x: float, y: float) -> None:
            super().__init__()
            self.x, self.y = x, y  # level-0 px

    def __init__(self, protocol: ImageProtocol = "auto", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.protocol = protocol
        self.cell_px = cell_pixels(protocol)
        self.compositor: Compositor | None = None
        self.view: View | None = None
        self.overlays = Layers()
        self.pointer: Cursor | None = None
        self.frame: Frame | None = None  # the frame on screen
        self._dragging = False

    def compose(self) -> ComposeResult:
        yield image_class(self.protocol)(classes="picture")

    # ---- what the screen calls ------------------------------------------------------------
    def view_size(self) -> tuple[int, int]:
        cw, ch = self.cell_px
        return max(1, self.size.width) * cw, max(1, self.size.height) * ch

    def attach(self, compositor: Compositor) -> None:
        self.compositor = compositor
        self.view = View.fit(compositor.source.dimensions, self.view_size())
        self.redraw()

    def set_view(self, view: View) -> None:
        self.view = view
        self.redraw()

    def pan(self, fx: float, fy: float) -> None:
        """Pan by (fx, fy) steps of PAN_FRACTION of the view (1, 0: a quarter to the right)."""
        if self.view is not None:
            self.set_view(self.view.pan(fx * PAN_FRACTION, fy * PAN_FRACTION))

    def zoom(self, factor: float, anchor: tuple[float, float] | None = None) -> None:
        if self.view is not None:
            self.set_view(self.view.zoom(factor, anchor))

    def zoom_at_cursor(self, factor: float) -> None:
        anchor = (self.pointer.px, self.pointer.py) if self.pointer else None
        self.zoom(factor, anchor)

    def redraw(self) -> None:
        if self.compositor is None or self.view is None:
            return
        self._render_view(self.view, Layers(**vars(self.overlays)))

    # ---- rendering off the event loop -------------------------------------------------------
    @work(thread=True, exclusive=True, group="slide-render", exit_on_error=False)
    def _render_view(self, view: View, layers: Layers) -> None:
        worker = get_current_worker()
        try:
            self._render_steps(view, layers)
        except Exception as exc:  # a read error, or the screen closed the slide meanwhile
            if not worker.is_cancelled and self.is_attached:
                self.app.call_from_thread(self.notify, one_line(exc), severity="error")

    def _render_steps(self, view: View, layers: Layers) -> None:
        comp = self.compositor
        assert comp is not None
        worker = get_current_worker()
        frame = comp.compose(view, layers)
        if worker.is_cancelled:
            return
        self.app.call_from_thread(self._show, frame)
        if frame.missing:
            comp.source.fetch(comp.wanted(view, ring=0), stop=lambda: worker.is_cancelled)
            if worker.is_cancelled:
                return
            frame = comp.compose(view, layers)
            if worker.is_cancelled:
                return
            self.app.call_from_thread(self._show, frame)
        # The ring around the view, so the next pan is usually sharp at once.
        comp.source.fetch(comp.wanted(view), stop=lambda: worker.is_cancelled)

    def _show(self, frame: Frame) -> None:
        if frame.view != self.view:
            return  # an older view's picture arriving late
        self.frame = frame
        self.query_one(".picture").image = PILImage.fromarray(frame.rgb)  # type: ignore[attr-defined]
        self.post_message(self.Shown(frame))

    # ---- events ---------------------------------------------------------------------------
    def on_resize(self, event: events.Resize) -> None:
        if self.view is not None:
            self.set_view(self.view.resized(*self.view_size()))

    def _view_px(self, x: int, y: int) -> tuple[float, float]:
        cw, ch = self.cell_px
        return (x + 0.5) * cw, (y + 0.5) * ch

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if self.view is None:
            return
        if self._dragging and (event.delta_x or event.delta_y):
            cw, ch = self.cell_px
            self.set_view(self.view.pan_px(-event.delta_x * cw, -event.delta_y * ch))
        self.pointer = Cursor(*self._view_px(event.x, event.y))
        self.post_message(self.CursorMoved(*self.view.to_slide(self.pointer.px, self.pointer.py)))

    def on_mouse_down(self, event: events.MouseDown) -> None:
        self._dragging = True
        self.capture_mouse()

    def on_mouse_up(self, event: events.MouseUp) -> None:
        self._dragging = False
        self.release_mouse()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.pointer = Cursor(*self._view_px(event.x, event.y))
        self.zoom(ZOOM_STEP, (self.pointer.px, self.pointer.py))
        event.stop()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self.pointer = Cursor(*self._view_px(event.x, event.y))
        self.zoom(1 / ZOOM_STEP, (self.pointer.px, self.pointer.py))
        event.stop()
