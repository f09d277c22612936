"""SEGMENT_CELLS on what its model was not made for, and what it writes about it: a real IHC
image (scikit-image's, DAB + haematoxylin) is named out of domain tile by tile; library chatter
goes to the log; the size filter holds on every polygon written."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import anyio
import numpy as np
import pytest
from shapely.geometry import shape

from tests.cells.images import ihc_slide
from tests.cells.test_segment_cells import cells_wf, executors, run_to_end
from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.jobs.segment_cells.extract import CellRecords
from wsitui.jobs.segment_cells.trace import outlines
from wsitui.jobs.segment_cells.write import CellWriter

pytestmark = pytest.mark.anyio


class _ChattyModel:
    """Prints from TorchScript, as instanseg's flood fill does ("Reached maximum number of
    iterations - this is not expected!"): TorchScript's print goes through sys.stdout."""

    pixel_size = 0.5

    def __init__(self) -> None:
        import torch

        @torch.jit.script
        def chatter(x: torch.Tensor) -> torch.Tensor:
            print("Reached maximum number of iterations - this is not expected!")
            return x

        self._chatter = chatter
        self._torch = torch

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self._chatter(self._torch.zeros(1))
        return np.zeros(batch.shape[:3], np.int32)


def test_library_chatter_goes_to_the_log_not_stdout(tmp_path, sample_slide, capsys, caplog):
    from wsitui.jobs.common.shards import ShardStore
    from wsitui.jobs.segment_cells.backends.local import run_tiles
    from wsitui.jobs.segment_cells.plan import plan_tiles
    from wsitui.slides.reader import open_slide

    reader = open_slide(sample_slide)
    plan = plan_tiles(
        reader, slide_mpp=0.5, model_px=0.5, tile_size=1024, max_nucleus_um=20, tissue=None
    )
    with caplog.at_level(logging.INFO, logger="wsitui.models.chatter"):
        run_tiles(
            reader,
            plan,
            _ChattyModel(),
            ShardStore(tmp_path / "shards", {}),
            batch_size=1,
            min_area_px=4,
            read_threads=1,
            on_progress=lambda p: None,
            check_cancel=lambda: None,
        )
    reader.close()
    print("the app's own line")  # another writer's output still reaches stdout
    out = capsys.readouterr().out
    assert "Reached maximum" not in out and "the app's own line" in out
    logged = [r.getMessage() for r in caplog.records if "Reached maximum" in r.getMessage()]
    assert len(logged) == len(plan.tiles)


def test_a_polygon_under_min_area_once_traced_is_not_written(tmp_path: Path):
    # Two instances whose pixel counts pass the filter, but whose outlines as written (the
    # largest 4-connected piece of one, the repaired ring of the other) are 1 µm² at 0.5 µm/px.
    ring = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], np.float64)
    big = np.array([[10, 10], [30, 10], [30, 30], [10, 30]], np.float64)
    rec = CellRecords(
        xy=np.concatenate([ring, big]),
        starts=np.array([0, 4, 8]),
        centroid=np.array([[1.0, 1.0], [20.0, 20.0]]),
        area=np.array([100.0, 400.0]),  # the pixel counts extraction filtered on
        perimeter=np.array([8.0, 80.0]),
        status=np.zeros(2, np.uint8),
        depth=np.ones(2),
    )
    with CellWriter(tmp_path, job_id="j", mpp=0.5, gz=False, min_area_um2=6.0) as w:
        written = w.add(rec, np.ones(2, bool), (0, 0))
    assert written.tolist() == [False, True] and w.count == 1 and w.dropped == 1
    features = json.loads((tmp_path / "cells.geojson").read_text())["features"]
    areas = [shape(f["geometry"]).area * 0.25 for f in features]
    assert areas == [100.0]
    assert features[0]["properties"]["measurements"]["Area µm^2"] == 100.0


async def test_the_size_filter_holds_for_every_polygon_of_a_job(tmp_path, sample_slide):
    engine, cells_id = await run_to_end(tmp_path / "d", cells_wf(sample_slide, min_area_um2=25))
    job = engine._jobs[cells_id]
    out = engine.results_dir(job)
    mpp = json.loads((out / "manifest.json").read_text())["mpp"]
    features = json.loads((out / "cells.geojson").read_text())["features"]
    assert features
    for f in features:
        assert shape(f["geometry"]).area * mpp * mpp >= 25
        assert f["properties"]["measurements"]["Area µm^2"] >= 25


async def test_an_ihc_image_is_named_out_of_domain_tile_by_tile(tmp_path):
    slide = ihc_slide(tmp_path / "ihc.tif", crop=256, factor=4)  # 1024² at 0.6 µm/px
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
    stages: list[str] = []
    async with Engine(tmp_path / "d", executors()) as engine:
        cells_id = engine.submit("t", spec).jobs[0].id
        engine.bus.add_listener(
            lambda e: (
                stages.append(e.job.stage)
                if getattr(e, "job", None) is not None and e.job.id == cells_id
                else None
            )
        )
        with anyio.fail_after(300):
            await engine.wait_idle()
        job = engine._jobs[cells_id]
        manifest = json.loads((engine.results_dir(job) / "manifest.json").read_text())
    assert job.state is JobState.SUCCEEDED, job.error
    odd = [w for w in manifest["warnings"] if "out of domain" in w]
    assert odd and "stained like DAB" in odd[0]
    tiles = manifest["tiles"]["processed"]
    assert f"{tiles} tile(s)" in odd[0] or "tile(s)" in odd[0]
    assert "0,0" in odd[0]  # named, so a user can look at them
    assert any(s.startswith("segmenting") and "out of domain" in s for s in stages)  # live


async def test_generated_h_and_e_is_not_called_out_of_domain(tmp_path, sample_slide):
    engine, cells_id = await run_to_end(tmp_path / "d", cells_wf(sample_slide, tile_size=512))
    out = engine.results_dir(engine._jobs[cells_id])
    warnings = json.loads((out / "manifest.json").read_text())["warnings"]
    assert not [w for w in warnings if "out of domain" in w or "implausib" in w]


def test_a_cells_perimeter_is_its_exported_polygons_length(tmp_path):
    """`Perimeter µm` is the length of the polygon written (what QuPath measures on it), not
    a separate estimate: for a drawn disc traced along pixel edges, its staircase, 8 r, which
    is 4/pi times 2 pi r (README, SEGMENT_CELLS outputs)."""
    r = 10
    yy, xx = np.mgrid[:64, :64]
    lab = ((xx - 31.5) ** 2 + (yy - 31.5) ** 2 <= r * r).astype(np.int32)
    ring = outlines(lab)[1] + 500.0
    rec = CellRecords(
        xy=ring,
        starts=np.array([0, len(ring)]),
        centroid=np.array([[532.0, 532.0]]),
        area=np.array([float(lab.sum())]),
        perimeter=np.array([0.0]),  # not what is written
        status=np.zeros(1, np.uint8),
        depth=np.ones(1),
    )
    with CellWriter(tmp_path, job_id="j", mpp=0.5, gz=False) as w:
        w.add(rec, np.ones(1, bool), (0, 0))
    (feature,) = json.loads((tmp_path / "cells.geojson").read_text())["features"]
    perimeter = feature["properties"]["measurements"]["Perimeter µm"]
    assert perimeter == pytest.approx(shape(feature["geometry"]).length * 0.5)
    assert perimeter == pytest.approx(8 * r * 0.5)
    assert perimeter / (2 * math.pi * r * 0.5) == pytest.approx(4 / math.pi)
