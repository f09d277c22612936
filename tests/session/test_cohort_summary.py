"""The cohort summary is written as slides finish: a crash loses no finished row.

The executor is the engine tests' gated fake (exact control over which slide ends when); the
real jobs' rows are checked against their manifests in tests/headless/test_cohort_run.py.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import anyio
import pyarrow.parquet as pq
import pytest

from tests.core.fakes import GatedExecutor
from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, WorkflowSpec
from wsitui.session.cohort import Cohort, CohortSlide
from wsitui.session.cohort_summary import CohortSummaryWriter

pytestmark = pytest.mark.anyio


def cohort(n: int) -> Cohort:
    return Cohort(
        index=0,
        tenant="lab",
        name="study",
        template=("mask",),
        template_types=("TISSUE_MASK",),
        slides=[
            CohortSlide(f"s{i}", Path(f"/slides/s{i}.svs"), 1, 1, None, {"case": f"C{i}"})
            for i in range(n)
        ],
        meta_columns=("case",),
    )


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


async def test_a_finished_slides_row_is_on_disk_before_the_cohort_ends(tmp_path):
    ex = GatedExecutor()
    c = cohort(3)
    async with Engine(tmp_path / "data", [ex], max_workers=3) as engine:
        spec = WorkflowSpec(
            name="study",
            jobs=tuple(
                JobSpec(id=f"{s.id}-mask", type="TISSUE_MASK", slide=str(s.path), branch=s.id)
                for s in c.slides
            ),
        )
        wf_id = engine.submit("lab", spec).workflow.id
        writer = CohortSummaryWriter(engine, c, wf_id)
        engine.bus.add_listener(writer)
        writer.start()
        assert rows(writer.csv_path) == []  # the header alone: nothing has finished

        # slide s1 ends; a tissue manifest gives it an area (the fake writes none)
        with anyio.fail_after(5):
            await engine.wait_until(lambda: len(ex.started) == 3)  # results dirs made
        out = engine.results_dir(engine.job("lab", f"{wf_id}.s1-mask"))
        out.mkdir(parents=True, exist_ok=True)
        mask = {"job_type": "TISSUE_MASK", "mask": {"shape": [10, 20], "mpp": 100.0,
                "tissue_fraction": 0.5}}  # fmt: skip
        (out / "manifest.json").write_text(json.dumps(mask))
        ex.release(f"{wf_id}.s1-mask")
        ex.release(f"{wf_id}.s2-mask", "fail")
        with anyio.fail_after(5):
            await engine.wait_until(
                lambda: all(
                    engine.job("lab", f"{wf_id}.{k}").state.terminal for k in ("s1-mask", "s2-mask")
                )
            )
        # on disk now, while s0 still runs: what a crash at this instant would leave
        early = rows(writer.csv_path)
        assert sorted((r["slide_id"], r["case"], r["state"]) for r in early) == [
            ("s1", "C1", "SUCCEEDED"),
            ("s2", "C2", "FAILED"),
        ]
        by_id = {r["slide_id"]: r for r in early}
        assert float(by_id["s1"]["tissue_area_mm2"]) == pytest.approx(0.5 * 200 * 1e4 / 1e6)
        assert by_id["s2"]["error"] == "mask: synthetic failure"

        ex.release(f"{wf_id}.s0-mask")
        with anyio.fail_after(5):
            await engine.wait_idle()
        engine.bus.remove_listener(writer)
        writer.finish()
    final = rows(writer.csv_path)
    assert [(r["slide_id"], r["state"]) for r in final] == [
        ("s0", "SUCCEEDED"),
        ("s1", "SUCCEEDED"),
        ("s2", "FAILED"),
    ]  # complete and in cohort order once the run ends
    table = pq.read_table(writer.parquet_path).to_pylist()
    assert [(t["slide_id"], t["state"], t["case"]) for t in table] == [
        ("s0", "SUCCEEDED", "C0"),
        ("s1", "SUCCEEDED", "C1"),
        ("s2", "FAILED", "C2"),
    ]


def test_every_column_a_job_type_fills_is_a_column_of_the_summary():
    from wsitui.jobs.registry import JOB_TYPES
    from wsitui.session.cohort_summary import VALUE_COLUMNS

    names = {c for c, _ in VALUE_COLUMNS}
    assert {cls.job_type: set(cls.summary_columns) - names for cls in JOB_TYPES} == {
        cls.job_type: set() for cls in JOB_TYPES
    }


def test_a_row_takes_each_job_types_columns_from_its_executor_and_names_no_type(
    tmp_path, monkeypatch
):
    from wsitui.core.executor import Executor
    from wsitui.core.paths import results_dir
    from wsitui.core.records import Job, JobState
    from wsitui.session import cohort_rows, cohort_summary

    class Area(Executor):
        job_type = "AREA"
        summary_columns = ("tissue_area_mm2",)

        @classmethod
        def summary_fields(cls, manifest, results_dir):
            return {"tissue_area_mm2": manifest["area"]}

    class Count(Executor):
        job_type = "COUNT"
        summary_columns = ("cells", "model")

        @classmethod
        def summary_fields(cls, manifest, results_dir):
            return {"cells": manifest["n"], "model": str(results_dir.name)}

    types = {"AREA": Area, "COUNT": Count}
    monkeypatch.setattr(cohort_summary, "executor_class", types.get)
    monkeypatch.setattr(cohort_rows, "executor_class", types.get)

    def job(key: str, kind: str, manifest: dict) -> Job:
        out = results_dir(tmp_path, "lab", "wf1", key)
        out.mkdir(parents=True)
        (out / "manifest.json").write_text(json.dumps(manifest))
        return Job(f"id-{key}", key, "wf1", "lab", kind, "/s.svs", "s0", (), {}, JobState.SUCCEEDED)

    jobs = [
        job("s0-a", "AREA", {"area": 1.23456789}),
        job("s0-b", "COUNT", {"n": 100}),
        job("s0-c", "COUNT", {"n": 7}),  # a second job of a type: the first one's columns stay
    ]
    c = cohort(1)
    row = cohort_summary.slide_row(c, c.slides[0], jobs, tmp_path)
    assert row["tissue_area_mm2"] == 1.234568  # rounded to 6 places in the table
    assert (row["cells"], row["model"]) == (100, "s0-b")
    assert row["cells_per_mm2"] == round(100 / 1.23456789, 3)  # from the unrounded area
    areas = cohort_rows.TissueAreas(tmp_path)
    running = dataclasses.replace(jobs[0], state=JobState.RUNNING)
    assert areas(running) is None  # no area yet, and none remembered for when it succeeds
    assert [areas(j) for j in jobs] == [1.23456789, None, None]
