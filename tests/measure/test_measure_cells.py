"""MEASURE_CELLS through the real engine on a generated slide: mask -> cells -> measure,
outputs against each other and QuPath's names, refusals, resume after an interruption."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pyarrow.parquet as pq
import pytest

from wsitui.core.engine import Engine, InvalidRequest
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.jobs.measure_cells.names import ALL
from wsitui.jobs.measure_cells.params import MeasureCellsParams, available_cpus, default_workers
from wsitui.jobs.registry import default_executors

pytestmark = pytest.mark.anyio


def workflow(slide: Path, **params: object) -> WorkflowSpec:
    return WorkflowSpec(
        name="w",
        jobs=(
            JobSpec(id="mask", type="TISSUE_MASK", slide=str(slide)),
            JobSpec(
                id="cells",
                type="SEGMENT_CELLS",
                slide=str(slide),
                depends_on=("mask",),
                params={"model": "classical", "tile_size": 512},
            ),
            JobSpec(
                id="measure",
                type="MEASURE_CELLS",
                slide=str(slide),
                depends_on=("cells",),
                params=params,
            ),
        ),
    )


async def run_to_end(data: Path, spec: WorkflowSpec) -> tuple[Engine, list[str]]:
    async with Engine(data, default_executors()) as engine:
        w = engine.submit("t", spec)
        with anyio.fail_after(300):
            await engine.wait_idle()
    return engine, [j.id for j in w.jobs]


def features(out: Path) -> list[dict]:
    return json.loads((out / "cells.geojson").read_text())["features"]


async def test_mask_cells_measure_outputs_agree_and_use_qupath_names(tmp_path, sample_slide):
    engine, ids = await run_to_end(tmp_path / "d", workflow(sample_slide))
    cells_job, job = engine._jobs[ids[1]], engine._jobs[ids[2]]
    assert job.state is JobState.SUCCEEDED, job.error
    out, up = engine.results_dir(job), engine.results_dir(cells_job)
    manifest = json.loads((out / "manifest.json").read_text())
    measured, upstream = features(out), features(up)
    # Every upstream cell, once, with its id and polygon unchanged
    assert sorted(f["id"] for f in measured) == sorted(f["id"] for f in upstream)
    by_id = {f["id"]: f for f in upstream}
    for f in measured:
        assert f["geometry"] == by_id[f["id"]]["geometry"]
        m = f["properties"]["measurements"]
        assert m["Area µm^2"] == by_id[f["id"]]["properties"]["measurements"]["Area µm^2"]
    # QuPath's names, in QuPath's layout
    m0 = measured[0]["properties"]["measurements"]
    for name in (
        "Nucleus: Area µm^2",
        "Nucleus: Perimeter µm",
        "Nucleus: Circularity",
        "Hematoxylin: Nucleus: Mean",
        "Eosin: Cytoplasm: Mean",
        "Hematoxylin: Cytoplasm: Std.Dev.",
    ):
        assert name in m0
    # The table: one row per cell, the same numbers as the GeoJSON
    table = pq.read_table(out / "measurements.parquet").to_pylist()
    assert len(table) == len(measured) == manifest["cells"] == job.counters["cells"] > 100
    rows = {r["id"]: r for r in table}
    for f in measured:
        m, r = f["properties"]["measurements"], rows[f["id"]]
        for name in ALL:
            assert r[name] == m.get(name), name
    # The stains the manifest says were used, estimated from this slide
    stains = manifest["stains"]
    assert stains["source"] == "macenko"
    assert stains["hematoxylin"][0] > stains["eosin"][0]  # haematoxylin absorbs red
    # Nuclei are haematoxylin, the tissue around them eosin (the generator draws them so)
    h_nuc = np.nanmean([r["Hematoxylin: Nucleus: Mean"] for r in table])
    h_cyt = np.nanmean([r["Hematoxylin: Cytoplasm: Mean"] for r in table])
    e_nuc = np.nanmean([r["Eosin: Nucleus: Mean"] for r in table])
    e_cyt = np.nanmean([r["Eosin: Cytoplasm: Mean"] for r in table])
    assert h_nuc > h_cyt + 0.1 and e_cyt > e_nuc - 0.05
    # The upstream's own area is of the polygon; ours of its pixels: close, not equal
    areas = np.array(
        [
            [r["Nucleus: Area µm^2"], by_id[r["id"]]["properties"]["measurements"]["Area µm^2"]]
            for r in table
        ]
    )
    assert np.median(np.abs(areas[:, 0] / areas[:, 1] - 1)) < 0.1
    cells_area = np.array([r["Cell: Area µm^2"] for r in table])
    assert (cells_area > areas[:, 0]).mean() > 0.95  # the ring adds area


async def test_given_stain_vectors_are_used_and_recorded(tmp_path, sample_slide):
    vectors = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]]
    engine, ids = await run_to_end(
        tmp_path / "d", workflow(sample_slide, stain_vectors=vectors, expansion_um=0)
    )
    job = engine._jobs[ids[2]]
    assert job.state is JobState.SUCCEEDED, job.error
    out = engine.results_dir(job)
    stains = json.loads((out / "manifest.json").read_text())["stains"]
    assert stains["source"] == "param"
    assert np.allclose(stains["hematoxylin"], np.asarray(vectors[0]) / np.linalg.norm(vectors[0]))
    table = pq.read_table(out / "measurements.parquet").to_pylist()
    assert all(r["Eosin: Cytoplasm: Mean"] is None for r in table)  # no ring: not measured


async def test_without_a_segment_cells_upstream_it_is_refused(tmp_path, sample_slide):
    alone = WorkflowSpec(
        name="w", jobs=(JobSpec(id="measure", type="MEASURE_CELLS", slide=str(sample_slide)),)
    )
    on_mask = WorkflowSpec(
        name="w",
        jobs=(
            JobSpec(id="mask", type="TISSUE_MASK", slide=str(sample_slide)),
            JobSpec(
                id="measure",
                type="MEASURE_CELLS",
                slide=str(sample_slide),
                depends_on=("mask",),
            ),
        ),
    )
    async with Engine(tmp_path / "d", default_executors()) as engine:
        for spec in (alone, on_mask):
            with pytest.raises(InvalidRequest, match="needs a SEGMENT_CELLS upstream on the same"):
                engine.submit("t", spec)


async def test_bad_params_are_refused_in_one_line(tmp_path, sample_slide):
    async with Engine(tmp_path / "d", default_executors()) as engine:
        with pytest.raises(InvalidRequest, match="parallel"):
            engine.submit("t", workflow(sample_slide, stain_vectors=[[1, 1, 0], [2, 2, 0]]))


@pytest.mark.parametrize("workers", [0, -1, "more"])
async def test_workers_outside_1_to_the_cpu_count_are_refused_in_one_line(
    tmp_path, sample_slide, workers
):
    cpus = available_cpus()
    if workers == "more":
        workers = cpus + 1
    async with Engine(tmp_path / "d", default_executors()) as engine:
        with pytest.raises(InvalidRequest) as e:
            engine.submit("t", workflow(sample_slide, workers=workers))
    assert f"workers = {workers} is not 1 to {cpus}" in str(e.value)
    assert "\n" not in str(e.value)


def test_workers_default_to_one_per_cpu_at_most_four_and_take_any_count_up_to_the_cpus():
    assert MeasureCellsParams().workers is None  # the job then uses default_workers()
    assert default_workers() == min(4, available_cpus())
    assert MeasureCellsParams(workers=available_cpus()).workers == available_cpus()


async def test_a_resumed_job_measures_only_what_is_left_and_writes_the_same(tmp_path, sample_slide):
    spec = workflow(sample_slide, tile_size=128)
    engine, ids = await run_to_end(tmp_path / "ref", spec)
    reference = pq.read_table(engine.results_dir(engine._jobs[ids[2]]) / "measurements.parquet")

    data = tmp_path / "d"
    async with Engine(data, default_executors()) as engine:
        w = engine.submit("t", spec)
        mid = w.jobs[2].id
        with anyio.fail_after(300):
            await engine.wait_until(lambda: engine._jobs[mid].tiles_done >= 3)
        stopped_at = engine._jobs[mid].tiles_done
        assert engine._jobs[mid].state is JobState.RUNNING
    progress: list[int] = []
    async with Engine(data, default_executors()) as engine:
        engine.bus.add_listener(
            lambda e: (
                progress.append(e.job.tiles_done)
                if getattr(e, "job", None) is not None and e.job.id == mid
                else None
            )
        )
        with anyio.fail_after(300):
            await engine.wait_idle()
        job = engine._jobs[mid]
        out = engine.results_dir(job)
    assert job.state is JobState.SUCCEEDED and job.attempt == 1, job.error
    assert min(progress) >= stopped_at  # resumed, not from tile 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shards"]["reused"] >= stopped_at
    resumed = pq.read_table(out / "measurements.parquet")
    # Ids are derived from the cells job's id, which differs between the two data dirs
    cols = [c for c in reference.column_names if c != "id"]
    assert resumed.select(cols).to_pylist() == reference.select(cols).to_pylist()


async def test_a_canceled_job_stops_at_a_tile_and_writes_no_outputs(tmp_path, sample_slide):
    async with Engine(tmp_path / "d", default_executors()) as engine:
        w = engine.submit("t", workflow(sample_slide, tile_size=128))
        mid = w.jobs[2].id
        with anyio.fail_after(300):
            await engine.wait_until(lambda: engine._jobs[mid].tiles_done >= 2)
        engine.cancel("t", mid)
        with anyio.fail_after(60):
            await engine.wait_until(lambda: engine._jobs[mid].state is JobState.CANCELED)
        job = engine._jobs[mid]
        out = engine.results_dir(job)
    assert job.tiles_done < job.tiles_total  # stopped part-way, not run to the end
    for name in ("cells.geojson", "measurements.parquet", "manifest.json"):
        assert not (out / name).exists()


def test_a_writer_that_fails_half_way_open_leaves_no_file_open_or_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GeoJSON partial is open when the Parquet writer fails (a disk that fills between the
    two): the half-made writer is never entered, so nothing else would close or remove it."""
    from wsitui.jobs.measure_cells import write

    opened: list[object] = []
    real_open = Path.open

    def spy_open(self: Path, *a: object, **k: object) -> object:
        f = real_open(self, *a, **k)  # type: ignore[call-overload]
        opened.append(f)
        return f

    def no_parquet(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "open", spy_open)
    monkeypatch.setattr(pq, "ParquetWriter", no_parquet)
    with pytest.raises(OSError, match="No space left"):
        write.MeasureWriter(tmp_path)
    assert opened and all(f.closed for f in opened)  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == []
