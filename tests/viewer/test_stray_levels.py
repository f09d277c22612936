"""A label OpenSlide lists as a pyramid level (written tiled, its sides reduced by different
factors: `SlideReader.stray_levels`) is never a level the viewer draws the slide from: a view
at its scale showed the label (reviewer, 2026-12-06: a 1000x1000 label among the levels of an
8192x6144 pyramid was picked at view scales 6.5-7.5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from tests.slides.foreign import Foreign, write_foreign
from wsitui.slides.reader import open_slide
from wsitui.viewer.tiles import TileSource
from wsitui.viewer.view import nearest_level

LABEL_GREY = 40


def _slide_with_a_tiled_label(tmp_path: Path) -> Path:
    img = np.full((3072, 4096, 3), 230, np.uint8)
    img[500:2500, 500:3500] = (150, 80, 160)  # tissue
    path = write_foreign(
        tmp_path / "x.tif", img, Foreign(aperio=None, compression="lzw", photometric="rgb")
    )
    with tifffile.TiffWriter(path, append=True) as tif:  # as a scanner's label, but tiled
        label = np.full((1200, 1200, 3), LABEL_GREY, np.uint8)
        tif.write(label, tile=(64, 64), photometric="rgb", subfiletype=1, metadata=None)
    return path


def test_the_viewer_never_draws_a_stray_level(tmp_path: Path):
    with open_slide(_slide_with_a_tiled_label(tmp_path)) as reader:
        (stray,) = reader.stray_levels  # OpenSlide sorts the label in among the levels
        assert reader.level_dimensions[stray] == (1200, 1200)
        source = TileSource(reader)
        try:
            assert reader.level_downsamples[stray] not in source.downsamples
            assert source.real_levels == reader.level_count - 1
            # A view at the label's own scale: drawn from a level of the slide, pixel for pixel.
            level = nearest_level(source.downsamples, reader.level_downsamples[stray])
            ds = source.downsamples[level]
            slide_level = reader.level_downsamples.index(ds)
            assert slide_level != stray
            x0, y0, x1, y1 = source.tile_box((level, 0, 0))
            want = reader.read_region(
                (round(x0 * ds), round(y0 * ds)), slide_level, (x1 - x0, y1 - y0)
            )
            np.testing.assert_array_equal(source.read_tile((level, 0, 0)), want)
            assert f"level {slide_level} " in source.level_label(level)
        finally:
            source.close()
