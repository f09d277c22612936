"""The compositor: exact overlay geometry, reads only through fetch, a coarse picture first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wsitui.slides.reader import open_slide
from wsitui.viewer.cells import CellIndex
from wsitui.viewer.compose import Compositor, Layers
from wsitui.viewer.tiles import TileSource
from wsitui.viewer.tissue import TissueOutline
from wsitui.viewer.view import View

MARK = (1, 254, 3)  # a colour no pixel of the H&E-like sample has


def square_geojson(path: Path, x: float, y: float, side: float, object_type: str) -> Path:
    ring = [[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]
    feature = {
        "type": "Feature",
        "id": "planted",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "objectType": object_type,
            "classification": {"name": "Planted", "color": list(MARK)},
            "measurements": {"Area µm^2": 400.0},
        },
    }
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


def ring_pixels(x0: int, y0: int, x1: int, y1: int) -> set[tuple[int, int]]:
    """(row, col) of a 1-px rectangle outline through corners (x0, y0) and (x1, y1)."""
    out = {(y0, x) for x in range(x0, x1 + 1)} | {(y1, x) for x in range(x0, x1 + 1)}
    return out | {(y, x0) for y in range(y0, y1 + 1)} | {(y, x1) for y in range(y0, y1 + 1)}


@pytest.fixture
def compositor(sample_dir: Path):
    reader = open_slide(sample_dir / "s.svs")
    comp = Compositor(TileSource(reader, 64), reader.mpp)
    yield comp
    comp.source.close()


# view (x0, y0, scale) -> expected corners in view px of the square (1000, 1000)-(1040, 1040)
CASES = [
    ((980.0, 990.0, 1.0), (20, 10, 60, 50)),  # level 0, 1:1
    ((990.0, 995.0, 0.5), (20, 10, 100, 90)),  # zoomed in 2x past level 0
    ((960.0, 960.0, 4.0), (10, 10, 20, 20)),  # zoomed out: level 1
]


@pytest.mark.parametrize(("where", "corners"), CASES)
def test_a_planted_square_cell_outlines_exactly_the_expected_pixels(
    compositor, tmp_path, where, corners
):
    compositor.cells = CellIndex.load(
        square_geojson(tmp_path / "c.geojson", 1000, 1000, 40, "detection"), (4096, 3072)
    )
    x0, y0, scale = where
    view = View(4096, 3072, x0, y0, scale, 120, 100)
    frame = compositor.compose_sync(view, Layers(scale_bar=False))
    assert frame.cells_mode == "outlines" and frame.cells_drawn == 1
    marked = {
        (int(r), int(c)) for r, c in zip(*np.nonzero((frame.rgb == MARK).all(axis=2)), strict=True)
    }
    assert marked == ring_pixels(*corners)
    # Off, the same view has none of those pixels.
    plain = compositor.compose(view, Layers(cells=False, scale_bar=False))
    assert not (plain.rgb == MARK).all(axis=2).any()
    assert plain.cells_mode == "hidden"


@pytest.mark.parametrize(("where", "corners"), CASES[:2])
def test_a_tissue_outline_follows_the_same_rule(compositor, tmp_path, where, corners):
    compositor.tissue = TissueOutline.load(
        square_geojson(tmp_path / "t.geojson", 1000, 1000, 40, "annotation"), (4096, 3072)
    )
    x0, y0, scale = where
    view = View(4096, 3072, x0, y0, scale, 120, 100)
    frame = compositor.compose_sync(view, Layers(scale_bar=False))
    marked = {
        (int(r), int(c)) for r, c in zip(*np.nonzero((frame.rgb == MARK).all(axis=2)), strict=True)
    }
    assert marked >= ring_pixels(*corners)  # 1-px lines at this width; nothing far from them
    assert all(
        min(abs(r - corners[1]), abs(r - corners[3]), abs(c - corners[0]), abs(c - corners[2])) <= 1
        for r, c in marked
    )


def test_small_cells_become_a_density_layer(compositor, sample_dir):
    compositor.cells = CellIndex.load(sample_dir / "cells.geojson", (4096, 3072))
    fit = View.fit((4096, 3072), (256, 192))
    frame = compositor.compose_sync(fit)
    assert frame.cells_mode == "density"
    assert frame.cells_drawn == len(compositor.cells)
    close = View(4096, 3072, 1800.0, 1200.0, 1.0, 256, 192)
    assert compositor.compose_sync(close).cells_mode == "outlines"


def test_compose_reads_nothing_and_fills_unread_tiles_from_the_thumbnail(compositor):
    view = View(4096, 3072, 1000.0, 800.0, 1.0, 640, 400)
    first = compositor.compose(view)
    assert compositor.source.reads == 0
    assert first.missing and first.level == 0
    assert first.rgb.std() > 5  # a picture (the thumbnail scaled up), never a blank
    compositor.source.fetch(compositor.wanted(view, ring=0))
    sharp = compositor.compose(view)
    assert sharp.complete
    assert not np.array_equal(sharp.rgb, first.rgb)
    # What was read covers the view and stays within the slide.
    log = compositor.source.read_log
    assert {entry[0] for entry in log} == {0}
    for _, x, y, w, h in log:
        assert x >= 0 and y >= 0 and x + w <= 4096 and y + h <= 3072
    assert min(e[1] for e in log) <= 1000 and min(e[2] for e in log) <= 800
    assert max(e[1] + e[3] for e in log) >= 1640 and max(e[2] + e[4] for e in log) >= 1200


def test_views_coarser_than_the_thumbnail_read_nothing(compositor):
    frame = compositor.compose(View.fit((4096, 3072), (200, 150)))
    assert frame.complete and compositor.source.reads == 0
