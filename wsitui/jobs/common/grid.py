"""The tile grid job types work on, and `tiles.json`, the grid TISSUE_MASK hands downstream.

`GridGeometry` cuts a pyramid level into tiles of `tile_size` px (the stride). Each tile owns a
"core" rectangle: cores never overlap and together cover the level exactly, so a result that is
kept only where its core is (a nucleus whose centroid lies in the core) is kept exactly once.
The region a job reads is the core grown by `overlap` px on every side, clipped to the level;
segmentation uses it so objects cut by a tile's edge are whole in some tile. Rectangles are in
level px; `level0_*` give level-0 coordinates, (0, 0) at the top-left corner of the image.

A grid has at most MAX_GRID_TILES tiles: checked before anything per tile is allocated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from wsitui.core.executor import JobError
from wsitui.slides.errors import quoted

TILES_FILE = "tiles.json"
TILES_FORMAT = "wsitui.tiles/1"
MAX_GRID_TILES = 1_000_000  # ~50 MB of per-tile bookkeeping; a 200k x 100k slide at 256 px: 305k
FRACTION_DECIMALS = 6  # tiles.json stores fractions rounded; tissue is decided on those values

Rect = tuple[int, int, int, int]  # (x, y, w, h)


@dataclass(frozen=True, slots=True)
class Tile:
    col: int
    row: int
    core: Rect  # level px this tile owns (cores partition the level)
    read: Rect  # level px a job reads: the core grown by the overlap, clipped to the level
    level_downsample: float

    def _level0(self, rect: Rect) -> tuple[int, int, int, int]:
        x, y, w, h = rect
        ds = self.level_downsample
        x0, y0 = round(x * ds), round(y * ds)
        return x0, y0, round((x + w) * ds) - x0, round((y + h) * ds) - y0

    @property
    def location(self) -> tuple[int, int]:
        """Level-0 top-left of the read rectangle, as read_region wants it."""
        x, y, _, _ = self._level0(self.read)
        return x, y

    @property
    def level0_core(self) -> Rect:
        return self._level0(self.core)

    @property
    def level0_read(self) -> Rect:
        return self._level0(self.read)

    def in_core(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Which points (level px, relative to the read rectangle's top-left) lie in the core."""
        cx, cy = self.core[0] - self.read[0], self.core[1] - self.read[1]
        w, h = self.core[2], self.core[3]
        return (x >= cx) & (x < cx + w) & (y >= cy) & (y < cy + h)


@dataclass(frozen=True, slots=True)
class GridGeometry:
    tile_size: int
    level: int
    level_downsample: float
    level_dimensions: tuple[int, int]
    overlap: int = 0

    def __post_init__(self) -> None:
        if self.tile_size < 1 or self.overlap < 0:
            raise ValueError(f"tile_size {self.tile_size} / overlap {self.overlap} is invalid")

    @property
    def cols(self) -> int:
        return math.ceil(self.level_dimensions[0] / self.tile_size)

    @property
    def rows(self) -> int:
        return math.ceil(self.level_dimensions[1] / self.tile_size)

    @property
    def count(self) -> int:
        return self.cols * self.rows

    def check_budget(self, slide: Path | str) -> None:
        """JobError naming the limit when the grid has more than MAX_GRID_TILES tiles."""
        if self.count > MAX_GRID_TILES:
            lw, lh = self.level_dimensions
            raise JobError(
                f"slide {quoted(slide)}: a {self.tile_size}-px tile grid on level {self.level} "
                f"({lw}x{lh} px) has {self.count:,} tiles, over the {MAX_GRID_TILES:,} tile "
                "limit; use a larger tile_size or a coarser level"
            )

    def core_rect(self, col: int, row: int) -> Rect:
        x, y = col * self.tile_size, row * self.tile_size
        lw, lh = self.level_dimensions
        return x, y, min(self.tile_size, lw - x), min(self.tile_size, lh - y)

    def tile(self, col: int, row: int) -> Tile:
        if not (0 <= col < self.cols and 0 <= row < self.rows):
            raise IndexError(f"tile ({col}, {row}) is outside the {self.cols}x{self.rows} grid")
        x, y, w, h = self.core_rect(col, row)
        lw, lh = self.level_dimensions
        o = self.overlap
        rx, ry = max(0, x - o), max(0, y - o)
        read = (rx, ry, min(lw, x + w + o) - rx, min(lh, y + h + o) - ry)
        return Tile(col, row, (x, y, w, h), read, self.level_downsample)

    def level0_edges(self, slide_dims: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Tile edges (cols + 1, rows + 1) in level-0 px, clipped to the slide."""
        ds = self.level_downsample
        xe = np.minimum(np.arange(self.cols + 1) * self.tile_size * ds, slide_dims[0])
        ye = np.minimum(np.arange(self.rows + 1) * self.tile_size * ds, slide_dims[1])
        return xe.astype(np.float64), ye.astype(np.float64)


# ------------------------------------------------------------------------ mask under tiles


def _edge_integral(s: np.ndarray, edges: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of a summed-area table at fractional edges along one axis."""
    n = s.shape[axis] - 1
    e = np.clip(edges, 0, n)
    i = np.minimum(np.floor(e).astype(np.int64), max(n - 1, 0))
    t = e - i
    a, b = np.take(s, i, axis=axis), np.take(s, np.minimum(i + 1, n), axis=axis)
    shape = [1, 1]
    shape[axis] = len(e)
    return a * (1 - t.reshape(shape)) + b * t.reshape(shape)


def mask_fractions(
    mask: np.ndarray,
    mask_downsample: tuple[float, float],
    slide_dims: tuple[int, int],
    geometry: GridGeometry,
) -> np.ndarray:
    """Exact area fraction of `mask` (True pixels) under each tile's core, (rows, cols)."""
    xe, ye = geometry.level0_edges(slide_dims)
    xe, ye = xe / mask_downsample[0], ye / mask_downsample[1]
    # The mask is constant per pixel, so its running sum is piecewise linear between pixel
    # edges: interpolating it at fractional tile edges is exact. Rows first, then columns.
    h, w = mask.shape
    run_x = np.zeros((h, w + 1), np.int32)  # a row's count fits: masks are < 2**31 px wide
    np.cumsum(mask, axis=1, dtype=np.int32, out=run_x[:, 1:])
    per_row = np.diff(_edge_integral(run_x, xe, 1), axis=1)  # (h, cols)
    run_y = np.zeros((h + 1, geometry.cols))
    np.cumsum(per_row, axis=0, out=run_y[1:])
    sums = np.diff(_edge_integral(run_y, ye, 0), axis=0)  # (rows, cols)
    area = np.outer(np.diff(ye), np.diff(xe))
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(area > 0, sums / area, 0.0)
    return np.clip(frac, 0.0, 1.0)


# ------------------------------------------------------------------------------ tiles.json


class TileGrid(BaseModel):
    """tiles.json: a TISSUE_MASK job's tile grid and which tiles hold tissue.

    Fractions are stored rounded to FRACTION_DECIMALS and a tile is tissue when its stored
    fraction is at least `min_tissue_fraction` (a tile exactly at the threshold is kept), so
    `tissue_tiles` and `is_tissue` always agree with the numbers in the file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = TILES_FORMAT
    tile_size: int
    level: int
    level_downsample: float
    level_dimensions: tuple[int, int]  # (w, h) of `level`
    slide_dimensions: tuple[int, int]  # (w, h) of level 0
    cols: int
    rows: int
    min_tissue_fraction: float
    mask_downsample: tuple[float, float]  # level-0 px per mask px, (x, y)
    mask_shape: tuple[int, int]  # (rows, cols) of tissue_mask.png
    tissue_fraction: list[list[float]]  # [row][col]
    tissue_tiles: list[tuple[int, int]]  # (col, row), row-major order

    @classmethod
    def build(
        cls,
        geometry: GridGeometry,
        slide_dims: tuple[int, int],
        mask: np.ndarray,
        mask_downsample: tuple[float, float],
        min_tissue_fraction: float,
    ) -> TileGrid:
        frac = np.round(
            mask_fractions(mask, mask_downsample, slide_dims, geometry), FRACTION_DECIMALS
        )
        tissue = frac >= min_tissue_fraction
        return cls(
            tile_size=geometry.tile_size,
            level=geometry.level,
            level_downsample=geometry.level_downsample,
            level_dimensions=geometry.level_dimensions,
            slide_dimensions=slide_dims,
            cols=geometry.cols,
            rows=geometry.rows,
            min_tissue_fraction=min_tissue_fraction,
            mask_downsample=mask_downsample,
            mask_shape=(int(mask.shape[0]), int(mask.shape[1])),
            tissue_fraction=frac.tolist(),
            tissue_tiles=[(int(c), int(r)) for r, c in zip(*np.nonzero(tissue), strict=True)],
        )

    @property
    def geometry(self) -> GridGeometry:
        return GridGeometry(
            self.tile_size, self.level, self.level_downsample, self.level_dimensions
        )

    def fraction(self, col: int, row: int) -> float:
        return self.tissue_fraction[row][col]

    def is_tissue(self, col: int, row: int) -> bool:
        return self.tissue_fraction[row][col] >= self.min_tissue_fraction

    def tile_rect(self, col: int, row: int) -> Rect:
        """(x, y, w, h) at `level`, clipped to the level."""
        return self.geometry.core_rect(col, row)

    def tile_location(self, col: int, row: int) -> tuple[int, int]:
        """Level-0 top-left of a tile, as read_region wants it."""
        return self.geometry.tile(col, row).location

    def mask_box(self, col: int, row: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) of the mask pixels a tile touches."""
        x, y, w, h = self.tile_rect(col, row)
        ds, (dx, dy) = self.level_downsample, self.mask_downsample
        return (
            math.floor(y * ds / dy),
            min(self.mask_shape[0], math.ceil((y + h) * ds / dy)),
            math.floor(x * ds / dx),
            min(self.mask_shape[1], math.ceil((x + w) * ds / dx)),
        )
