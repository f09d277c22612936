"""SEGMENT_CELLS through the real engine on generated slides: outputs, accuracy against the
generator's truth, resume after an interruption, cancel, and refusals."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path

import anyio
import numpy as np
import pytest
from shapely.geometry import shape

from tests.cells.specs import mask_and_cells
from tests.cells.truth import score_against_truth
from tests.slides.samples import sample_slide_path
from wsitui.core.engine import Engine, InvalidRequest
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.jobs.segment_cells.executor import SegmentCellsExecutor
from wsitui.jobs.tissue_mask.executor import TissueMaskExecutor

pytestmark = pytest.mark.anyio


def executors() -> list:
    return [TissueMaskExecutor(), SegmentCellsExecutor()]


def cells_wf(slide: Path, **params: object) -> WorkflowSpec:
    return mask_and_cells(slide, **{"model": "classical", **params})


async def run_to_end(data: Path, spec: WorkflowSpec) -> tuple[Engine, str]:
    async with Engine(data, executors()) as engine:
        w = engine.submit("t", spec)
        with anyio.fail_after(300):
            await engine.wait_idle()
    return engine, w.jobs[1].id


async def test_outputs_manifest_and_accuracy_against_the_truth(tmp_path, sample_slide):
    spec = cells_wf(sample_slide, geojson_gz=True, tile_size=512)
    engine, cells_id = await run_to_end(tmp_path / "d", spec)
    job = engine._jobs[cells_id]
    assert job.state is JobState.SUCCEEDED, job.error
    out = engine.results_dir(job)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tissue_source"] == "upstream:mask"
    assert manifest["tiles"]["skipped"] > 0  # background costs nothing
    assert manifest["model"]["kind"] == "classical"
    assert manifest["model"]["name"] == "classical"  # asked for: said, but no note
    assert not any("classical fallback" in w for w in manifest["warnings"])
    for stage in ("read", "infer", "post", "merge", "write"):
        assert stage in manifest["timings"]
    features = json.loads((out / "cells.geojson").read_text())["features"]
    assert manifest["cells"] == len(features) == job.counters["cells"]
    assert all(shape(f["geometry"]).is_valid for f in features)
    assert manifest["density_per_mm2"] > 0
    assert (out / "cells.geojson.gz").is_file() and (out / "preview.png").is_file()
    # Every output a script reads is in the manifest, with the digest of the file as it is
    # (cells.parquet was written but not listed, so a check of the artifacts missed it).
    listed = {a["path"]: a["sha256"] for a in manifest["artifacts"]}
    on_disk = {p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert set(listed) == on_disk - {"manifest.json"}, (set(listed), on_disk)
    for name, digest in listed.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    score = score_against_truth(out, sample_slide)
    assert score.f1 >= 0.9, score


async def test_a_resumed_job_yields_the_same_cells_as_an_uninterrupted_one(tmp_path, sample_slide):
    spec = cells_wf(sample_slide, tile_size=512)
    engine, ref_id = await run_to_end(tmp_path / "ref", spec)
    reference = (engine.results_dir(engine._jobs[ref_id]) / "cells.csv").read_text()

    data = tmp_path / "d"
    progress: list[int] = []
    async with Engine(data, executors()) as engine:
        w = engine.submit("t", spec)
        cells_id = w.jobs[1].id
        with anyio.fail_after(300):
            await engine.wait_until(lambda: engine._jobs[cells_id].tiles_done >= 8)
        stopped_at = engine._jobs[cells_id].tiles_done
    async with Engine(data, executors()) as engine:
        engine.bus.add_listener(
            lambda e: (
                progress.append(e.job.tiles_done)
                if getattr(e, "job", None) is not None and e.job.id == cells_id
                else None
            )
        )
        with anyio.fail_after(300):
            await engine.wait_idle()
        job = engine._jobs[cells_id]
        resumed = (engine.results_dir(job) / "cells.csv").read_text()
    assert job.state is JobState.SUCCEEDED and job.attempt == 1
    assert min(progress) >= stopped_at  # resumed at its last finished tile, not tile 0
    assert _rows(resumed) == _rows(reference)


@pytest.mark.parametrize(
    "model, torch, note",
    [
        ("classical", True, ""),  # asked for
        (None, True, ""),  # the documented default with no pretrained model cached
        (None, False, "torch or instanseg-torch is not installed"),  # InstanSeg could not run
    ],
)
async def test_the_classical_model_leaves_a_note_only_when_instanseg_could_not_be_used(
    tmp_path, tmp_path_factory, monkeypatch, model, torch, note
):
    """Every classical job left "model: classical, the classical fallback, not InstanSeg" in
    its manifest's warnings, also the default one the user never asked to change: every
    default card read `SUCCEEDED ⚠ 1 note` and every `wsitui run` ended with it. The model
    used is in the manifest's `model` either way; a note only says why InstanSeg was not."""
    from wsitui.models import source

    slide = sample_slide_path(tmp_path_factory, (2048, 1536), 3)
    monkeypatch.setenv("WSITUI_MODEL_DIR", str(tmp_path / "no-models"))  # nothing cached
    monkeypatch.setattr(source, "torch_available", lambda: torch)
    params: dict[str, object] = {"tile_size": 512}
    if model is not None:
        params["model"] = model
    engine, cells_id = await run_to_end(tmp_path / "d", mask_and_cells(slide, **params))
    job = engine._jobs[cells_id]
    assert job.state is JobState.SUCCEEDED, job.error
    manifest = json.loads((engine.results_dir(job) / "manifest.json").read_text())
    assert manifest["model"]["name"] == "classical"
    said = [w for w in manifest["warnings"] if w.startswith("model:")]
    if note:
        assert len(said) == 1 and note in said[0], manifest["warnings"]
        assert note in manifest["model"]["fallback_reason"]
    else:
        assert said == [], manifest["warnings"]


def _rows(text: str) -> list[tuple[str, ...]]:
    """Cells by centroid and area (ids differ: they are derived from the job's id)."""
    return sorted((r[1], r[2], r[5]) for r in csv.reader(text.splitlines()[1:]))


class _SlowModel:
    """Test double: one batch takes 5 s, longer than the cancel must take."""

    pixel_size = 0.5

    def predict(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(5)
        return np.zeros(batch.shape[:3], np.int32)


async def test_cancel_is_answered_within_about_a_second_mid_batch(tmp_path, sample_slide):
    from wsitui.jobs.common.shards import ShardStore
    from wsitui.jobs.segment_cells.backends import local as pipeline
    from wsitui.jobs.segment_cells.plan import plan_tiles
    from wsitui.slides.reader import open_slide

    reader = open_slide(sample_slide)
    plan = plan_tiles(
        reader, slide_mpp=0.5, model_px=0.5, tile_size=512, max_nucleus_um=20, tissue=None
    )
    asked: list[float] = []

    def check_cancel() -> None:
        if asked:
            raise RuntimeError("canceled")

    async def cancel_soon() -> None:
        await anyio.sleep(1.0)
        asked.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_soon)
        with pytest.raises(RuntimeError, match="canceled"):
            await anyio.to_thread.run_sync(
                lambda: pipeline.run_tiles(
                    reader,
                    plan,
                    _SlowModel(),
                    ShardStore(tmp_path / "shards", {}),
                    batch_size=1,
                    min_area_px=4,
                    read_threads=1,
                    on_progress=lambda p: None,
                    check_cancel=check_cancel,
                )
            )
        answered = time.monotonic()
    reader.close()
    assert answered - asked[0] < 1.5  # not the 5 s the batch takes


async def test_a_mask_of_another_slide_is_refused_at_submission(tmp_path, sample_slide):
    other = tmp_path / "other.svs"
    other.write_bytes(sample_slide.read_bytes())
    spec = WorkflowSpec(
        name="w",
        jobs=(
            JobSpec(id="mask", type="TISSUE_MASK", slide=str(other)),
            JobSpec(
                id="cells", type="SEGMENT_CELLS", slide=str(sample_slide), depends_on=("mask",)
            ),
        ),
    )
    async with Engine(tmp_path / "d", executors()) as engine:
        with pytest.raises(InvalidRequest, match="upstream TISSUE_MASK 'mask' is on another slide"):
            engine.submit("t", spec)


async def test_an_unusable_model_fails_its_job_with_one_line_and_nothing_else(
    tmp_path, sample_slide
):
    bad = tmp_path / "model.pt"
    bad.write_text("not a TorchScript file")
    spec = WorkflowSpec(
        name="w",
        jobs=(
            JobSpec(id="mask", type="TISSUE_MASK", slide=str(sample_slide)),
            JobSpec(
                id="cells",
                type="SEGMENT_CELLS",
                slide=str(sample_slide),
                branch="b",
                params={"model": str(bad)},
            ),
        ),
    )
    async with Engine(tmp_path / "d", executors()) as engine:
        w = engine.submit("t", spec)
        with anyio.fail_after(120):
            await engine.wait_idle()
        mask, cells = (engine._jobs[j.id] for j in w.jobs)
    assert mask.state is JobState.SUCCEEDED
    assert cells.state is JobState.FAILED
    assert cells.error and "\n" not in cells.error and "model.pt" in cells.error


@pytest.mark.parametrize("style", ["default", "grainy"])
async def test_the_shipped_model_over_a_whole_slide_scores_f1_of_at_least_0_9(
    tmp_path, tmp_path_factory, style
):
    from wsitui.slides.sample import write_sample_slide
    from wsitui.slides.style import style_named

    slide = tmp_path / f"{style}.svs"
    write_sample_slide(slide, size=(2048, 1536), seed=21, style=style_named(style))
    spec = cells_wf(slide, model="shipped", tile_size=512)
    engine, cells_id = await run_to_end(tmp_path / "d", spec)
    job = engine._jobs[cells_id]
    assert job.state is JobState.SUCCEEDED, job.error
    out = engine.results_dir(job)
    assert json.loads((out / "manifest.json").read_text())["model"]["kind"] == "shipped"
    score = score_against_truth(out, slide)
    assert score.f1 >= 0.9, score
