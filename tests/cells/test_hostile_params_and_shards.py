"""SEGMENT_CELLS against what a user (or an attacker) can hand it: params the config accepts
but memory cannot, shards that lie after an interruption, retries that must resume, a mask with
no tissue, and the progress the faces compute ETA from. Through the real engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import numpy as np
import pytest

from tests.cells.specs import mask_and_cells
from tests.cells.test_segment_cells import _rows, executors, run_to_end
from tests.jobs.test_tissue_small import write_tiff
from wsitui.core.engine import Engine, InvalidRequest
from wsitui.core.records import JobState
from wsitui.jobs.segment_cells.memory import (
    DEFAULT_BUDGET_GB,
    GB,
    READ_AHEAD_BYTES,
    estimate_bytes,
    input_size,
    largest_batch,
    largest_tile,
    read_window,
)

pytestmark = pytest.mark.anyio


def cells_wf(slide: Path, mask: dict | None = None, **params: object):  # type: ignore[no-untyped-def]
    spec = mask_and_cells(slide, **{"model": "classical", "tile_size": 512, **params})
    if mask:
        first = spec.jobs[0].model_copy(update={"params": mask})
        spec = spec.model_copy(update={"jobs": (first, spec.jobs[1])})
    return spec


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"batch_size": -3}, "batch_size must be 'auto' or a whole number >= 1, not -3"),
        ({"batch_size": 0}, "batch_size must be 'auto' or a whole number >= 1, not 0"),
        ({"max_nucleus_um": float("nan")}, "max_nucleus_um: Input should be a finite number"),
        ({"min_area_um2": float("inf")}, "min_area_um2: Input should be a finite number"),
        ({"assumed_mpp": float("nan")}, "assumed_mpp: Input should be a finite number"),
        ({"tile_size": 4096}, "tile_size 1504 is the largest that fits with batch_size 1"),
        ({"batch_size": 10**9, "tile_size": 576}, "batch_size 5 is the largest that fits"),
        ({"tile_size": 2048, "memory_gb": 1.9}, "tile_size 1952 is the largest"),
        # What the Dask backend cannot do is refused, not dropped with a warning after the run.
        (
            {"backend": "dask", "tile_labels": True},
            "tile_labels is not available with backend = 'dask'",
        ),
        ({"backend": "dask", "batch_size": 4}, "batch_size = 4 is not available with backend"),
    ],
)
async def test_params_the_memory_or_the_pipeline_cannot_take_are_refused_at_submission(
    tmp_path, sample_slide, params, says
):
    async with Engine(tmp_path / "d", executors()) as engine:
        with pytest.raises(InvalidRequest) as e:
            engine.submit("t", cells_wf(sample_slide, device="cpu", **params))
        assert not engine._jobs  # nothing was submitted, nothing runs
    assert says in str(e.value) and "\n" not in str(e.value)


async def test_the_default_and_a_raised_budget_are_accepted(tmp_path, sample_slide):
    async with Engine(tmp_path / "d", executors()) as engine:
        engine.submit("t", cells_wf(sample_slide, device="cpu"), start=False)
        engine.submit("t", cells_wf(sample_slide, tile_size=4096, memory_gb=6), start=False)


def test_the_budget_arithmetic_bounds_every_value_the_config_accepts():
    # The default job fits the stated budget on CPU, with room for the read-ahead.
    assert estimate_bytes(576, 1, 20.0, on_gpu=False) <= DEFAULT_BUDGET_GB * GB
    # Read-ahead is bounded in bytes, whatever the batch size (it was 2 x batch_size tiles).
    for tile in (64, 576, 1504, 4096):
        tile_bytes = input_size(tile, 20.0) ** 2 * 3
        for batch in (1, 4, 64, 10**9):
            window = read_window(tile_bytes, batch, threads=2)
            assert window >= 1
            assert window == 1 or window * tile_bytes <= READ_AHEAD_BYTES
    assert read_window(input_size(576, 20.0) ** 2 * 3, 1, threads=2) == 3  # default: as before
    # The values the refusals name are the largest that fit: one step more does not.
    for budget_gb, batch in ((1.5, 1), (1.9, 1), (4.0, 2)):
        budget = budget_gb * GB
        best = largest_tile(batch, 20.0, False, budget)
        assert estimate_bytes(best, batch, 20.0, on_gpu=False) <= budget
        assert estimate_bytes(best + 32, batch, 20.0, on_gpu=False) > budget
        most = largest_batch(576, 20.0, False, budget)
        assert estimate_bytes(576, most, 20.0, on_gpu=False) <= budget
        assert estimate_bytes(576, most + 1, 20.0, on_gpu=False) > budget


async def test_shards_that_lie_after_an_interruption_are_redone_and_counted(tmp_path, sample_slide):
    spec = cells_wf(sample_slide)
    engine, ref_id = await run_to_end(tmp_path / "ref", spec)
    reference = (engine.results_dir(engine._jobs[ref_id]) / "cells.csv").read_text()

    data = tmp_path / "d"
    async with Engine(data, executors()) as engine:
        cells_id = engine.submit("t", spec).jobs[1].id
        with anyio.fail_after(300):
            await engine.wait_until(lambda: engine._jobs[cells_id].tiles_done >= 4)
        shards = engine.results_dir(engine._jobs[cells_id]) / "shards"
    done = sorted(shards.glob("t*.bin"))
    assert len(done) >= 4
    shutil.copyfile(done[1], done[0])  # one tile's shard copied over another's
    raw = bytearray(done[2].read_bytes())
    raw[-60] ^= 0xFF  # a flipped bit: bad CRC inside the zip
    done[2].write_bytes(bytes(raw))
    done[3].write_bytes(b"\x93NUMPY not what it says")  # junk
    async with Engine(data, executors()) as engine:
        with anyio.fail_after(300):
            await engine.wait_idle()
        job = engine._jobs[cells_id]
        out = engine.results_dir(job)
    assert job.state is JobState.SUCCEEDED, job.error
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shards"]["redone"] == 3
    assert manifest["shards"]["reused"] >= 1
    assert _rows((out / "cells.csv").read_text()) == _rows(reference)  # nothing silently wrong


async def test_a_retried_job_reuses_its_valid_shards_and_says_how_many(tmp_path, sample_slide):
    spec = cells_wf(sample_slide)
    engine, ref_id = await run_to_end(tmp_path / "ref", spec)
    reference = (engine.results_dir(engine._jobs[ref_id]) / "cells.csv").read_text()
    async with Engine(tmp_path / "d", executors()) as engine:
        cells_id = engine.submit("t", spec).jobs[1].id
        with anyio.fail_after(300):
            await engine.wait_until(lambda: engine._jobs[cells_id].tiles_done >= 4)
            engine.cancel("t", cells_id)
            await engine.wait_until(lambda: engine._jobs[cells_id].state.terminal)
        assert engine._jobs[cells_id].state is JobState.CANCELED
        engine.retry("t", cells_id)
        with anyio.fail_after(300):
            await engine.wait_idle()
        job = engine._jobs[cells_id]
        out = engine.results_dir(job)
    assert job.state is JobState.SUCCEEDED and job.attempt == 2, job.error
    shards = json.loads((out / "manifest.json").read_text())["shards"]
    assert shards["reused_from_earlier_attempts"] >= 4 and shards["redone"] == 0
    assert shards["reused"] == shards["reused_from_earlier_attempts"]
    assert _rows((out / "cells.csv").read_text()) == _rows(reference)


async def test_progress_counts_tissue_tiles_and_shows_skipped_ones_apart(tmp_path, sample_slide):
    seen: list[tuple[int, int, int]] = []
    async with Engine(tmp_path / "d", executors()) as engine:
        cells_id = engine.submit("t", cells_wf(sample_slide)).jobs[1].id
        engine.bus.add_listener(
            lambda e: (
                seen.append((e.job.tiles_done, e.job.tiles_total, len(e.job.counters)))
                if getattr(e, "job", None) is not None and e.job.id == cells_id
                else None
            )
        )
        with anyio.fail_after(300):
            await engine.wait_idle()
        job = engine._jobs[cells_id]
        manifest = json.loads((engine.results_dir(job) / "manifest.json").read_text())
    tiles = manifest["tiles"]
    assert tiles["skipped"] > 0
    assert job.tiles_total == tiles["processed"] == tiles["total"] - tiles["skipped"]
    assert job.counters["skipped"] == tiles["skipped"]
    running = [s for s in seen if s[1] > 0]
    assert running and running[0][0] == 0  # no head start from background tiles
    assert all(total == tiles["processed"] for _, total, _ in running)


async def test_a_job_that_segments_no_tile_says_so_in_its_manifest_and_stage(tmp_path):
    stages: list[str] = []
    # Blank glass: the mask is empty, every tile is skipped. (A huge min_object_um2 no longer
    # empties a mask: the size filter is capped by the image's own area.)
    glass = write_tiff(tmp_path / "glass.tif", np.full((1024, 1536, 3), 243, np.uint8), 0.5)
    async with Engine(tmp_path / "d", executors()) as engine:
        spec = cells_wf(glass)
        cells_id = engine.submit("t", spec).jobs[1].id
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
    assert job.state is JobState.SUCCEEDED
    assert manifest["cells"] == 0 and manifest["tiles"]["processed"] == 0
    assert any("no tile segmented" in w and "empty" in w for w in manifest["warnings"])
    assert any("warning: no tile segmented" in s for s in stages)


async def test_a_retried_dask_job_reuses_its_shards_too(tmp_path, sample_slide):
    from wsitui.jobs.segment_cells.backends.dask import DaskClusters
    from wsitui.jobs.segment_cells.executor import SegmentCellsExecutor
    from wsitui.jobs.tissue_mask.executor import TissueMaskExecutor

    clusters = DaskClusters(local_processes=False, local_workers=1)  # threads: a quick start
    cells = SegmentCellsExecutor(dask=clusters)
    async with Engine(tmp_path / "d", [TissueMaskExecutor(), cells]) as engine:
        cells_id = engine.submit("t", cells_wf(sample_slide, backend="dask")).jobs[1].id
        with anyio.fail_after(300):
            await engine.wait_until(lambda: engine._jobs[cells_id].tiles_done >= 3)
            engine.cancel("t", cells_id)
            await engine.wait_until(lambda: engine._jobs[cells_id].state.terminal)
        assert engine._jobs[cells_id].state is JobState.CANCELED
        engine.retry("t", cells_id)
        with anyio.fail_after(300):
            await engine.wait_idle()
        job = engine._jobs[cells_id]
        manifest = json.loads((engine.results_dir(job) / "manifest.json").read_text())
    assert job.state is JobState.SUCCEEDED and job.attempt == 2, job.error
    assert manifest["backend"] == "dask"
    assert manifest["shards"]["reused_from_earlier_attempts"] >= 3
    ran = sum(manifest["dask"]["tiles_by_worker"].values())
    assert ran <= manifest["tiles"]["processed"] - 3  # the reused tiles were not sent again
