"""SEGMENT_CELLS writes the cells in the tissue, not those on the glass beside it
(`tissue = "auto"`, in_tissue.py): before, a tile that held a little tissue had every cell
drawn on its glass written too, ink dots and dirt that TISSUE_MASK leaves out on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pytest

from tests.cells.images import write_rgb_slide
from tests.cells.specs import mask_and_cells
from wsitui.core.engine import Engine
from wsitui.core.records import JobState, WorkflowSpec
from wsitui.jobs.segment_cells.executor import SegmentCellsExecutor
from wsitui.jobs.segment_cells.in_tissue import TISSUE_MARGIN_UM, TissueTest
from wsitui.jobs.tissue_mask.executor import TissueMaskExecutor

MPP = 0.5
TISSUE_RIGHT = 1200  # level-0 px: tissue left of this, glass right of it
NUCLEI = [(x, y) for x in range(120, 1100, 90) for y in range(120, 1400, 90)]
INK = [(x, y) for x in (1320, 1420, 1520) for y in range(150, 1400, 150)]  # 60-160 µm out
# nuclei on the tissue's edge, centred 2 µm inside it and 2 µm out on the glass: the margin's
EDGE = [(TISSUE_RIGHT + dx, y) for dx in (-4, 4) for y in range(165, 1400, 180)]


def _disc(img: np.ndarray, x: int, y: int, r: int, color: tuple[int, int, int]) -> None:
    yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
    img[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = color


def _slide(path: Path, ink: list[tuple[int, int]] = INK) -> Path:
    rng = np.random.default_rng(7)
    img = np.full((1536, 2048, 3), 243, np.uint8)
    pink = np.array([228, 165, 200], np.int16) + rng.integers(-6, 7, (1536, TISSUE_RIGHT, 1))
    img[:, :TISSUE_RIGHT] = np.clip(pink, 0, 255).astype(np.uint8)
    for x, y in NUCLEI + EDGE:
        _disc(img, x, y, 5, (95, 60, 150))  # haematoxylin-dark nuclei in the tissue
    for x, y in ink:
        _disc(img, x, y, 5, (60, 60, 120))  # navy ink dots on the glass beside it
    return write_rgb_slide(path, img, MPP)


async def _cells(
    data: Path, slide: Path, tissue: str, own_mask: bool = False
) -> tuple[np.ndarray, dict]:
    spec = mask_and_cells(slide, model="classical", tissue=tissue)
    if own_mask:  # no TISSUE_MASK upstream: the job finds its own
        spec = WorkflowSpec(name="w", jobs=(spec.jobs[1].model_copy(update={"depends_on": ()}),))
    async with Engine(data, [TissueMaskExecutor(), SegmentCellsExecutor()]) as engine:
        w = engine.submit("t", spec)
        with anyio.fail_after(300):
            await engine.wait_idle()
        job = engine._jobs[w.jobs[-1].id]
        assert job.state is JobState.SUCCEEDED, job.error
        out = engine.results_dir(job)
    manifest = json.loads((out / "manifest.json").read_text())
    features = json.loads((out / "cells.geojson").read_text())["features"]
    xy = np.array([np.mean(f["geometry"]["coordinates"][0], axis=0) for f in features])
    return xy.reshape(-1, 2), manifest


def _near(xy: np.ndarray, points: list[tuple[int, int]], px: float = 6.0) -> int:
    return sum(bool(len(xy)) and bool((np.hypot(*(xy - p).T) <= px).any()) for p in points)


@pytest.mark.anyio
async def test_cells_on_the_glass_beside_the_tissue_are_not_written(tmp_path: Path):
    slide = _slide(tmp_path / "inked.tif")
    tiles, tiles_manifest = await _cells(tmp_path / "tiles", slide, "tiles")
    # The setting this guards against: the tiles hold the ink, and the model outlines it.
    assert _near(tiles, INK) >= len(INK) - 2, "the classical model draws the ink dots as cells"
    assert tiles_manifest["cells_outside_tissue"] is None, "not looked for"
    auto, manifest = await _cells(tmp_path / "auto", slide, "auto")
    assert manifest["tissue_source"] == "upstream:mask"
    assert _near(auto, INK) == 0
    assert _near(auto, NUCLEI) == _near(tiles, NUCLEI) >= len(NUCLEI) - 4, "tissue kept"
    assert _near(auto, EDGE) == _near(tiles, EDGE) >= len(EDGE) - 1, "the edge's nuclei kept"
    assert manifest["cells"] == len(auto) == len(tiles) - manifest["cells_outside_tissue"]
    outside = manifest["cells_outside_tissue"]
    assert outside >= len(INK) - 2
    assert any(
        w.startswith("detections centred more than 8 µm off the tissue mask were not written")
        and "tissue = 'tiles'" in w
        for w in manifest["warnings"]
    ), manifest["warnings"]
    assert manifest["params"]["tissue"] == "auto"
    own, own_manifest = await _cells(tmp_path / "own", slide, "auto", own_mask=True)
    assert own_manifest["tissue_source"] == "own"
    assert _near(own, INK) == 0 and _near(own, NUCLEI) == _near(tiles, NUCLEI)


@pytest.mark.anyio
async def test_one_speck_off_the_tissue_is_counted_not_warned_about(tmp_path: Path):
    """Under 1 % of the detections: a speck of dirt is no news (the note would sit on every
    card of every slide with one)."""
    cells, manifest = await _cells(tmp_path / "d", _slide(tmp_path / "s.tif", INK[:1]), "auto")
    assert _near(cells, INK) == 0 and manifest["cells_outside_tissue"] == 1
    assert not any("off the tissue" in w for w in manifest["warnings"]), manifest["warnings"]


def test_the_margin_keeps_points_near_the_mask_and_drops_those_beyond():
    mask = np.zeros((10, 10), bool)
    mask[2:5, 2:5] = True  # mask px of 16 level-0 px (8 µm at 0.5 µm/px)
    test = TissueTest.of(mask, (16.0, 16.0), MPP)
    assert TISSUE_MARGIN_UM == 8.0
    inside, one_px_out, two_px_out = (3 * 16 + 8, 40.0), (5 * 16 + 8, 40.0), (6 * 16 + 8, 40.0)
    assert test(np.array([inside, one_px_out, two_px_out])).tolist() == [True, True, False]
    fine = TissueTest.of(mask, (4.0, 4.0), MPP)  # 2 µm px: 4 of them make the margin
    assert fine(np.array([(4 * 8 + 2, 12.0), (4 * 9 + 2, 12.0)])).tolist() == [True, False]
    far = np.array([(1e6, 1e6), (-5.0, -5.0)])  # past the mask: its edge px decide
    assert test(far).tolist() == [False, False]
    assert test(np.zeros((0, 2))).shape == (0,)
    assert not TissueTest.of(np.zeros((4, 4), bool), (16.0, 16.0), MPP)(np.array([(8, 8)])).any()


def test_x_goes_to_columns_and_y_to_rows_with_their_own_downsamples():
    mask = np.zeros((6, 14), bool)  # rows (y) x columns (x)
    mask[1, 8] = True
    test = TissueTest.of(mask, (16.0, 12.0), MPP, margin_um=0.1)  # one step: its 3x3
    x, y = 8 * 16 + 8, 1 * 12 + 6  # the mask px's centre, level-0 (x, y)
    assert test(np.array([(x, y), (x + 16, y + 12), (x + 32, y), (x, y + 24)])).tolist() == [
        True,
        True,
        False,
        False,
    ]
    assert not test(np.array([(y, x)])).any(), "(y, x) is another place"
