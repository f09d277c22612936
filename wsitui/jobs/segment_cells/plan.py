"""Where a SEGMENT_CELLS job reads: the model's pixel size, the pyramid level, the tile grid, and
which tiles hold tissue.

Everything is planned in "model pixels" (the slide resampled to the model's pixel size): a
virtual level whose downsample from level 0 is `scale = model_px / slide_mpp`. Tiles are cut on
that level with a core of `tile_size` and an overlap of just more than the largest nucleus, so
every nucleus lies whole inside the read region of the tile whose core holds its centroid.
Reads come from the finest pyramid level at or below `scale`, resampled once per tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from wsitui.jobs.common.grid import GridGeometry, Tile, mask_fractions
from wsitui.slides.reader import SlideReader

ALIGN = 32  # model inputs are padded to a multiple of this (UNet strides)
SNAP = 0.02  # a pyramid level this close to the model's scale is read without resampling


@dataclass(frozen=True, slots=True)
class CellPlan:
    slide_mpp: float  # µm per level-0 px used
    model_px: float  # µm per model px as read (the model's own, or within SNAP of it)
    scale: float  # level-0 px per model px
    read_level: int  # pyramid level the pixels come from
    geometry: GridGeometry  # tiles on the virtual model-px level
    overlap: int  # model px
    band: int  # model px around a core edge where seam duplicates are resolved
    input_size: int  # model input side: read region padded to a multiple of ALIGN
    tiles: tuple[Tile, ...]  # tiles to segment, row-major
    skipped: int  # tiles without tissue

    @property
    def total(self) -> int:
        return self.geometry.count


def overlap_for(max_nucleus_um: float, model_px: float) -> int:
    """Just more than the largest nucleus, in model px: a nucleus owned by a tile reaches at
    most a radius (plus the seam band) past its core, so a diameter leaves room for context;
    the input alignment adds more."""
    return math.ceil(max_nucleus_um / model_px) + 4


def plan_tiles(
    reader: SlideReader,
    *,
    slide_mpp: float,
    model_px: float,
    tile_size: int,
    max_nucleus_um: float,
    tissue: tuple[np.ndarray, tuple[float, float]] | None,
) -> CellPlan:
    """`tissue`: (mask, level-0 px per mask px) or None for every tile."""
    scale = model_px / slide_mpp
    level = reader.best_level_for_downsample(scale * (1 + SNAP))
    ds = reader.level_downsamples[level]
    if abs(scale / ds - 1) <= SNAP:
        # Within 2 % of a level (0.499 vs 0.5 µm/px): read that level as it is. Resampling
        # every tile by 0.2 % would cost time and blur pixels for no gain.
        scale = ds
        model_px = ds * slide_mpp
    w0, h0 = reader.dimensions
    dims = (max(1, math.ceil(w0 / scale)), max(1, math.ceil(h0 / scale)))
    need = overlap_for(max_nucleus_um, model_px)
    input_size = math.ceil((tile_size + 2 * need) / ALIGN) * ALIGN
    # The model sees the padded input anyway: use the padding as overlap (free context).
    overlap = (input_size - tile_size) // 2
    geometry = GridGeometry(tile_size, -1, scale, dims, overlap)
    if tissue is None:
        keep = np.ones((geometry.rows, geometry.cols), bool)
    else:
        mask, mask_ds = tissue
        # A tile is segmented when tissue lies within its read region, not just its core: a
        # nucleus whose centroid is in the core may reach into the overlap.
        grow = max(1, math.ceil(overlap * scale / min(mask_ds)))
        grown = ndimage.binary_dilation(mask, iterations=grow) if mask.any() else mask
        keep = mask_fractions(grown, mask_ds, (w0, h0), geometry) > 0
    tiles = tuple(
        geometry.tile(col, row)
        for row in range(geometry.rows)
        for col in range(geometry.cols)
        if keep[row, col]
    )
    return CellPlan(
        slide_mpp=slide_mpp,
        model_px=model_px,
        scale=scale,
        read_level=level,
        geometry=geometry,
        overlap=overlap,
        band=max(2, min(8, overlap // 4)),
        input_size=input_size,
        tiles=tiles,
        skipped=geometry.count - len(tiles),
    )
