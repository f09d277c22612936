"""A slide with no coarse level (a single-level tiled TIFF) in the viewer.

Its whole-slide view at 1,280 px was drawn at level 0: one canvas of every level-0 px in view
(a 30,000 px TIFF: 9.4 GB resident, 80 s for `wsitui view --snapshot`), from more tiles than
the cache holds, so most came out of the thumbnail scaled up anyway. Virtual levels, 4x apart
and built tile by tile, keep every canvas near the view's size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from wsitui.slides.reader import open_slide
from wsitui.viewer.compose import Compositor, Layers
from wsitui.viewer.tiles import TILE, TileSource
from wsitui.viewer.view import View

W, H = 8192, 5000  # base_ds 8: one virtual level (4x); 5000 is no multiple of a tile


def _tile(tx: int, ty: int) -> np.ndarray:
    yy, xx = np.mgrid[ty * 512 : ty * 512 + 512, tx * 512 : tx * 512 + 512]
    return np.stack([(xx * 7 + yy) % 256, (yy * 5) % 256, (xx ^ yy) % 256], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def single_level(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("single") / "single.tif"
    tiles = (_tile(tx, ty) for ty in range(-(-H // 512)) for tx in range(W // 512))
    tifffile.imwrite(
        path, tiles, shape=(H, W, 3), dtype=np.uint8, tile=(512, 512), photometric="rgb"
    )
    return path


def test_a_virtual_levels_tiles_are_the_area_average_of_level_0(single_level: Path):
    reader = open_slide(single_level)
    assert reader.level_count == 1
    src = TileSource(reader)
    try:
        assert src.downsamples == (1.0, 4.0) and src.level_dims(1) == (2048, 1250)
        expected = reader.read_level_scaled(0, (2048, 1250))  # exact 4 x 4 means
        for key in [(1, 0, 0), (1, 3, 2)]:  # an inner tile, the bottom-right (partial) one
            got = src.read_tile(key)
            x0, y0, x1, y1 = src.tile_box(key)
            assert np.array_equal(got[: 1250 - y0], expected[y0:y1, x0:x1])
        assert all(w <= TILE and h <= TILE for level, _, _, w, h in src.read_log)  # level 0
    finally:
        src.close()


def test_the_whole_slide_view_is_drawn_from_the_virtual_level(single_level: Path):
    src = TileSource(open_slide(single_level))
    try:
        comp = Compositor(src, None)
        view = View.fit((W, H), (1280, 781))
        frame = comp.compose_sync(view, Layers())
        assert frame.complete and frame.level == 1  # level 0 was a 8192 x 5000 canvas
        assert frame.rgb.shape == (781, 1280, 3)
    finally:
        src.close()


def test_a_virtual_level_is_labelled_as_computed(single_level: Path, sample_slide: Path):
    """It read "level 1 (÷4)" for a slide that has no level 1."""
    src = TileSource(open_slide(single_level))
    try:
        assert src.level_label(0) == "level 0 (÷1)"
        assert src.level_label(1) == "level 1 (÷4, computed from level 0)"
    finally:
        src.close()
    real = TileSource(open_slide(sample_slide))
    try:
        assert real.real_levels > 1
        assert real.level_label(1) == f"level 1 (÷{real.downsamples[1]:g})"
    finally:
        real.close()


def test_a_coarse_virtual_tile_stops_part_way_when_asked(single_level: Path):
    """A virtual tile reads the 16 tiles under it; `stop` was asked only before the first, so a
    key pressed during a slow coarse read waited for all 16."""
    src = TileSource(open_slide(single_level))
    try:
        assert src.fetch([(1, 0, 0)], stop=lambda: src.reads >= 3) == 0
        assert src.reads == 3 and (1, 0, 0) not in src.cache
        assert src.fetch([(1, 0, 0)]) == 1  # later, whole: the 3 read before are reused
        assert src.reads == 16 and (1, 0, 0) in src.cache
    finally:
        src.close()
