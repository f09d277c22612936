"""The tile grid a TISSUE_MASK job maps its mask onto: its geometry (checked against the grid
budget before anything is read) and the per-tile tissue fractions."""

from __future__ import annotations

from wsitui.core.executor import JobError
from wsitui.jobs.common.grid import GridGeometry, TileGrid
from wsitui.jobs.tissue_mask.mask import TissueMask
from wsitui.jobs.tissue_mask.params import TissueMaskParams
from wsitui.slides.errors import quoted
from wsitui.slides.reader import SlideReader


def build_tile_grid(tm: TissueMask, reader: SlideReader, params: TissueMaskParams) -> TileGrid:
    geometry = grid_geometry(reader, params)
    return TileGrid.build(
        geometry, reader.dimensions, tm.mask, tm.downsample, params.min_tissue_fraction
    )


def grid_geometry(reader: SlideReader, params: TissueMaskParams) -> GridGeometry:
    if params.level >= reader.level_count:
        raise JobError(
            f"param 'level' is {params.level} but slide {quoted(reader.path)} has levels "
            f"0-{reader.level_count - 1}; use one of those"
        )
    geometry = GridGeometry(
        params.tile_size,
        params.level,
        reader.level_downsamples[params.level],
        reader.level_dimensions[params.level],
    )
    geometry.check_budget(reader.path)
    return geometry
