"""The one place a view becomes a picture: slide region + overlays -> RGB at the view's size.

The TUI's slide widget and `wsitui view --snapshot` both call `Compositor.compose`; the
widget only shows what comes back.

* Slide: the pyramid level whose pixel size is nearest the view's (`nearest_level`). A level
  no finer than the kept thumbnail is drawn from the thumbnail; otherwise the level's cached
  tiles are pasted into a canvas covering the view (in that level's px) and the canvas is
  resampled to the view's size (area average when shrinking, bilinear when enlarging).
  `compose` never reads the slide: tiles not cached yet are drawn from the always-loaded
  thumbnail scaled up, and the frame says which tiles are missing (`Frame.missing`); the
  caller fetches them (off the UI thread) and composes again. `compose_sync` does both.
* Tissue: outlines of every ring, in the file's classification colour.
* Cells: outlines in their class colour when a median cell spans at least OUTLINE_MIN_PX view
  px (and at most MAX_OUTLINES are in view); otherwise a density heat layer (cells per
  HEAT_BIN x HEAT_BIN view px, smoothed, yellow to red). The selected cell is outlined in white.

Drawing rule (tests rely on it): a level-0 vertex (x, y) lands on view pixel
(floor((x - x0) / scale), floor((y - y0) / scale)), and consecutive vertices are joined by
1-px lines (PIL's line rule, both ends included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from wsitui.viewer.cells import CellIndex
from wsitui.viewer.tiles import RING, Key, TileSource
from wsitui.viewer.tissue import TissueOutline
from wsitui.viewer.view import View, format_um, nearest_level, scale_bar

OUTLINE_MIN_PX = 4.0  # a median cell at least this many view px wide: outlines, else density
MAX_OUTLINES = 20_000
HEAT_BIN = 8  # view px per density bin side
HEAT_SIGMA = 1.5  # density smoothing, in bins
SELECTED = (255, 255, 255)
SCALE_BAR_MIN_WIDTH = 240  # narrower pictures (half-block) get the scale bar as text only
# Thumbnail px past which `_from_base` draws only the slide's part of an area (about 200 MB of
# crop): views on screen stay far below it, a --region far larger than the slide does not.
CROP_LIMIT_PX = 64 << 20

CellsMode = Literal["outlines", "density", "hidden", "none"]


@dataclass
class Layers:
    """What to draw on top of the slide."""

    tissue: bool = True
    cells: bool = True
    selected: int | None = None  # cell index to highlight
    scale_bar: bool = True


@dataclass
class Frame:
    rgb: np.ndarray  # (view.height, view.width, 3) uint8
    view: View
    level: int
    missing: list[Key] = field(default_factory=list)  # tiles drawn from the coarse level
    cells_mode: CellsMode = "none"
    cells_drawn: int = 0

    @property
    def complete(self) -> bool:
        return not self.missing


class Compositor:
    def __init__(
        self,
        source: TileSource,
        mpp: float | None,
        cells: CellIndex | None = None,
        tissue: TissueOutline | None = None,
    ) -> None:
        self.source = source
        self.mpp = mpp
        self.cells = cells
        self.tissue = tissue

    def level_for(self, view: View) -> int:
        return nearest_level(self.source.downsamples, view.scale)

    def from_base(self, level: int) -> bool:
        """Whether `level` is no finer than the thumbnail (then the view is drawn from it)."""
        return self.source.downsamples[level] >= min(self.source.base_ds) * (1 - 1e-6)

    def wanted(self, view: View, ring: int = RING) -> list[Key]:
        """Tiles the view needs (plus a ring for panning), nearest the centre first."""
        level = self.level_for(view)
        if self.from_base(level):
            return []
        return self.source.tiles_for(view, level, ring)

    def compose_sync(self, view: View, layers: Layers | None = None) -> Frame:
        """Read what the view needs, then compose (for --snapshot and the benchmark)."""
        self.source.fetch(self.wanted(view, ring=0))
        return self.compose(view, layers)

    def compose(self, view: View, layers: Layers | None = None) -> Frame:
        layers = layers or Layers()
        level = self.level_for(view)
        rgb, missing = self._slide(view, level)
        img = Image.fromarray(rgb)
        draw = ImageDraw.Draw(img)
        if layers.tissue and self.tissue is not None:
            self._draw_tissue(draw, view)
        mode: CellsMode = "none"
        drawn = 0
        if self.cells is not None:
            if layers.cells:
                mode, drawn = self._draw_cells(img, view, layers.selected)
            else:
                mode = "hidden"
            if layers.selected is not None:
                self._outline(draw, view, self.cells.ring(layers.selected), SELECTED, 2)
        if layers.scale_bar and self.mpp and view.width >= SCALE_BAR_MIN_WIDTH:
            self._draw_scale_bar(draw, view)
        return Frame(np.asarray(img), view, level, missing, mode, drawn)

    # ---- slide ----------------------------------------------------------------------------
    def _slide(self, view: View, level: int) -> tuple[np.ndarray, list[Key]]:
        src = self.source
        x0, y0, x1, y1 = view.region
        if self.from_base(level):
            return self._from_base(x0, y0, x1, y1, (view.width, view.height), shrink=True), []
        ds = src.downsamples[level]
        # The canvas covers the view in level px (past the slide's edge too: background).
        cx0, cy0 = math.floor(x0 / ds), math.floor(y0 / ds)
        cx1, cy1 = math.ceil(x1 / ds), math.ceil(y1 / ds)
        cw, ch = max(1, cx1 - cx0), max(1, cy1 - cy0)
        keys = src.tiles_for(view, level)
        tiles = {k: src.cached(k) for k in keys}
        missing = [k for k, t in tiles.items() if t is None]
        if missing:
            canvas = self._from_base(cx0 * ds, cy0 * ds, cx1 * ds, cy1 * ds, (cw, ch))
        else:
            canvas = np.empty((ch, cw, 3), np.uint8)
            canvas[:] = src.reader.background
        for key, tile in tiles.items():
            if tile is None:
                continue
            tx0, ty0, tx1, ty1 = src.tile_box(key)
            ax, ay = max(tx0, cx0), max(ty0, cy0)
            bx, by = min(tx1, cx1), min(ty1, cy1)
            if ax < bx and ay < by:
                canvas[ay - cy0 : by - cy0, ax - cx0 : bx - cx0] = tile[
                    ay - ty0 : by - ty0, ax - tx0 : bx - tx0
                ]
        box = (x0 / ds - cx0, y0 / ds - cy0, x1 / ds - cx0, y1 / ds - cy0)
        shrink = view.scale >= ds
        out = Image.fromarray(canvas).resize(
            (view.width, view.height),
            Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR,
            box=box,
        )
        return np.asarray(out), missing

    def _from_base(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        size: tuple[int, int],
        shrink: bool = False,
    ) -> np.ndarray:
        """Level-0 area [x0, x1) x [y0, y1) at `size` px, drawn from the thumbnail."""
        src = self.source
        fx, fy = src.base_ds
        bx0, by0 = math.floor(x0 / fx), math.floor(y0 / fy)
        bx1, by1 = math.ceil(x1 / fx), math.ceil(y1 / fy)
        if (bx1 - bx0) * (by1 - by0) > CROP_LIMIT_PX:
            return self._slide_part_only(x0 / fx, y0 / fy, x1 / fx, y1 / fy, size)
        part = _crop(
            src.base, bx0, by0, max(1, bx1 - bx0), max(1, by1 - by0), src.reader.background
        )
        box = (x0 / fx - bx0, y0 / fy - by0, x1 / fx - bx0, y1 / fy - by0)
        resample = (
            Image.Resampling.BOX
            if shrink and (x1 - x0) / size[0] >= fx
            else Image.Resampling.BILINEAR
        )
        out = Image.fromarray(part).resize(size, resample, box=box)
        return np.array(out)

    def _slide_part_only(
        self, tx0: float, ty0: float, tx1: float, ty1: float, size: tuple[int, int]
    ) -> np.ndarray:
        """`_from_base` of an area far larger than the slide (thumbnail px [tx0, tx1) x
        [ty0, ty1)): background, and the slide's part drawn into its place. Cropping the whole
        area first asked for terabytes at `--region 0,0,1e6,1e6` (a MemoryError)."""
        src = self.source
        out = np.empty((size[1], size[0], 3), np.uint8)
        out[:] = src.reader.background
        ih, iw = src.base.shape[:2]
        sx, sy = size[0] / (tx1 - tx0), size[1] / (ty1 - ty0)  # output px per thumbnail px
        dx0 = max(0, math.floor((0 - tx0) * sx))
        dy0 = max(0, math.floor((0 - ty0) * sy))
        dx1 = min(size[0], math.ceil((iw - tx0) * sx))
        dy1 = min(size[1], math.ceil((ih - ty0) * sy))
        if dx0 >= dx1 or dy0 >= dy1:
            return out
        # The thumbnail with a pixel of background around it: the box may start just outside.
        part = _crop(src.base, -1, -1, iw + 2, ih + 2, src.reader.background)
        # Within it: where the slide is under one output px, the box would reach far past it.
        bx0, bx1 = (min(max(tx0 + d / sx + 1, 0.0), iw + 2.0) for d in (dx0, dx1))
        by0, by1 = (min(max(ty0 + d / sy + 1, 0.0), ih + 2.0) for d in (dy0, dy1))
        box = (bx0, by0, bx1, by1)
        drawn = Image.fromarray(part).resize((dx1 - dx0, dy1 - dy0), Image.Resampling.BOX, box=box)
        out[dy0:dy1, dx0:dx1] = np.asarray(drawn)
        return out

    # ---- overlays -------------------------------------------------------------------------
    @staticmethod
    def _points(view: View, ring: np.ndarray) -> list[int]:
        px = np.floor((ring[:, 0] - view.x0) / view.scale)
        py = np.floor((ring[:, 1] - view.y0) / view.scale)
        return np.stack([px, py], axis=1).astype(np.int64).ravel().tolist()

    def _outline(
        self,
        draw: ImageDraw.ImageDraw,
        view: View,
        ring: np.ndarray,
        color: tuple[int, int, int],
        width: int = 1,
    ) -> None:
        draw.line(self._points(view, ring), fill=color, width=width)

    def _draw_tissue(self, draw: ImageDraw.ImageDraw, view: View) -> None:
        assert self.tissue is not None
        x0, y0, x1, y1 = view.region
        for ring in self.tissue.query(x0, y0, x1, y1):
            self._outline(draw, view, ring, self.tissue.color, 1 if view.width < 400 else 2)

    def _draw_cells(
        self, img: Image.Image, view: View, selected: int | None
    ) -> tuple[CellsMode, int]:
        cells = self.cells
        assert cells is not None
        if not len(cells):  # a job that found no cell: nothing to draw, and no "density"
            return "outlines", 0
        x0, y0, x1, y1 = view.region
        on_screen = cells.median_size / view.scale
        if on_screen >= OUTLINE_MIN_PX:
            idx = cells.query(x0, y0, x1, y1)
            if len(idx) <= MAX_OUTLINES:
                draw = ImageDraw.Draw(img)
                colors = [c for _, c in cells.classes]
                for i in idx:
                    self._outline(draw, view, cells.ring(int(i)), colors[cells.class_idx[i]])
                return "outlines", len(idx)
        return "density", self._draw_density(img, view)

    def _draw_density(self, img: Image.Image, view: View) -> int:
        cells = self.cells
        assert cells is not None
        x0, y0, x1, y1 = view.region
        c = cells.centroid
        inside = (c[:, 0] >= x0) & (c[:, 0] < x1) & (c[:, 1] >= y0) & (c[:, 1] < y1)
        pts = c[inside]
        if not len(pts):
            return 0
        bx = ((pts[:, 0] - x0) / view.scale // HEAT_BIN).astype(np.int64)
        by = ((pts[:, 1] - y0) / view.scale // HEAT_BIN).astype(np.int64)
        nbx, nby = -(-view.width // HEAT_BIN), -(-view.height // HEAT_BIN)
        counts = np.zeros((nby, nbx), np.float32)
        np.add.at(counts, (np.clip(by, 0, nby - 1), np.clip(bx, 0, nbx - 1)), 1)
        density = ndimage.gaussian_filter(counts, HEAT_SIGMA, mode="constant")
        level = np.clip(density / max(float(density.max()), 1e-6), 0, 1)
        level = np.repeat(np.repeat(level, HEAT_BIN, 0), HEAT_BIN, 1)[: view.height, : view.width]
        alpha = (0.6 * level)[..., None]
        heat = np.stack([np.full_like(level, 255), 220 * (1 - level), np.zeros_like(level)], axis=2)
        rgb = np.asarray(img, np.float32)
        out = rgb * (1 - alpha) + heat * alpha
        img.paste(Image.fromarray(out.round().astype(np.uint8)))
        return len(pts)

    def _draw_scale_bar(self, draw: ImageDraw.ImageDraw, view: View) -> None:
        assert self.mpp
        um, px = scale_bar(view.scale * self.mpp, view.width / 5)
        n = round(px)
        x, y = 12, view.height - 14
        draw.rectangle((x - 4, y - 16, x + max(n, 60) + 4, y + 8), fill=(255, 255, 255))
        draw.rectangle((x, y, x + n, y + 4), fill=(0, 0, 0))
        draw.text(
            (x, y - 14), format_um(um).replace("µ", "u"), fill=(0, 0, 0)
        )  # PIL's font lacks µ


def _crop(
    img: np.ndarray, x0: int, y0: int, w: int, h: int, background: tuple[int, int, int]
) -> np.ndarray:
    """img[y0:y0+h, x0:x0+w] with `background` wherever that lies outside img."""
    out = np.empty((h, w, 3), np.uint8)
    out[:] = background
    ih, iw = img.shape[:2]
    ax, ay, bx, by = max(x0, 0), max(y0, 0), min(x0 + w, iw), min(y0 + h, ih)
    if ax < bx and ay < by:
        out[ay - y0 : by - y0, ax - x0 : bx - x0] = img[ay:by, ax:bx]
    return out


def minimap(source: TileSource, view: View, size: tuple[int, int]) -> np.ndarray:
    """The slide's thumbnail fitting `size` with the view's rectangle drawn on it."""
    base = Image.fromarray(source.base)
    w0, h0 = source.dimensions
    f = min(size[0] / w0, size[1] / h0)
    tw, th = max(1, round(w0 * f)), max(1, round(h0 * f))
    thumb = base.resize((tw, th), Image.Resampling.BOX)
    draw = ImageDraw.Draw(thumb)
    x0, y0, x1, y1 = view.region
    rect = (
        max(0, math.floor(x0 * f)), max(0, math.floor(y0 * f)),
        min(tw - 1, math.ceil(x1 * f) - 1), min(th - 1, math.ceil(y1 * f) - 1),
    )  # fmt: skip
    draw.rectangle(rect, outline=(220, 0, 0))
    return np.asarray(thumb)
