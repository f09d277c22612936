"""At 40x (0.25 µm/px) the slide is read at the model's 0.5 µm/px: its outlines must not come
in 2-px steps (traced in model pixels and scaled up), must cover the same nucleus (area kept),
and centroids must be as accurate at 1.5 µm as at 3 µm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import shape

from tests.cells.images import forty_x_slide
from tests.cells.test_segment_cells import executors
from tests.cells.truth import cells_centroids, match_centroids
from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.slides.sample import load_truth

pytestmark = pytest.mark.anyio

REGION = (1024, 768, 1536, 1024)  # tissue-rich part of the 4096 x 3072 sample


async def _cells(data: Path, slide: Path) -> Path:
    import anyio

    spec = WorkflowSpec(
        name="w",
        jobs=(
            JobSpec(
                id="cells",
                type="SEGMENT_CELLS",
                slide=str(slide),
                params={"model": "classical", "tissue": "all", "tile_size": 512},
            ),
        ),
    )
    async with Engine(data, executors()) as engine:
        cells_id = engine.submit("t", spec).jobs[0].id
        with anyio.fail_after(300):
            await engine.wait_idle()
        job = engine._jobs[cells_id]
        assert job.state is JobState.SUCCEEDED, job.error
        return engine.results_dir(job)


def _axis_aligned_share(features: list) -> float:
    """Share of outline edges that run exactly along x or y (a pixel staircase: all of them)."""
    aligned = total = 0
    for f in features:
        ring = np.asarray(f["geometry"]["coordinates"][0])
        d = np.diff(ring, axis=0)
        aligned += int(np.sum((np.abs(d[:, 0]) < 1e-9) | (np.abs(d[:, 1]) < 1e-9)))
        total += len(d)
    return aligned / max(1, total)


async def test_outlines_at_40x_are_smooth_cover_the_nucleus_and_centroids_hold(
    tmp_path, sample_slide
):
    slide40 = forty_x_slide(tmp_path / "forty.tif", sample_slide, REGION)
    out40 = await _cells(tmp_path / "d40", slide40)
    m40 = json.loads((out40 / "manifest.json").read_text())
    assert m40["tiles"]["scale"] == pytest.approx(2.0, rel=0.01)  # read at the model's 0.5
    f40 = json.loads((out40 / "cells.geojson").read_text())["features"]
    assert len(f40) > 100
    # Not a staircase of 2-px steps: most edges are not axis-aligned any more.
    assert _axis_aligned_share(f40) < 0.3
    # Each outline covers the pixels the model labelled: its area is the labelled area, and
    # it contains the cell's centroid.
    mpp = m40["mpp"]
    for f in f40:
        poly = shape(f["geometry"])
        assert poly.is_valid
        area = f["properties"]["measurements"]["Area µm^2"]
        assert poly.area * mpp * mpp == pytest.approx(area, rel=1e-3, abs=0.01)
    # Centroids against the generator's truth (2x: the region was enlarged twice).
    truth = load_truth(sample_slide).nuclei[:, :2]
    x, y, w, h = REGION
    inside = (truth[:, 0] >= x + 8) & (truth[:, 0] < x + w - 8)
    inside &= (truth[:, 1] >= y + 8) & (truth[:, 1] < y + h - 8)
    true40 = (truth[inside] - (x, y)) * 2
    pred = cells_centroids(out40)
    keep = (pred[:, 0] >= 16) & (pred[:, 0] < 2 * w - 16)
    keep &= (pred[:, 1] >= 16) & (pred[:, 1] < 2 * h - 16)
    near = match_centroids(pred[keep], true40, radius=1.5 / mpp)
    far = match_centroids(pred[keep], true40, radius=3.0 / mpp)
    assert far.f1 >= 0.85, far
    assert near.f1 >= far.f1 - 0.02, (near, far)
