"""`wsitui run` on a cohort: one chain per slide, reruns, failures, the summary and its rows.

Slides are generated 1,024 px samples; the cells job runs the classical model (no weights).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import statistics
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.cohorts import cohort_config
from tests.headless.helpers import corrupt_tiles
from wsitui.headless.run import RunOptions, run
from wsitui.headless.status import status
from wsitui.session.cohort_tracker import CohortTracker
from wsitui.slides.sample import write_sample_slide


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("cohort_slides")
    paths = []
    for seed in range(3):
        path = out / f"case{seed}.svs"
        write_sample_slide(path, size=(1024, 1024), seed=seed)
        paths.append(path)
    return paths


def config(tmp: Path, *, workers: int = 2) -> Path:
    paths = f'[scheduler]\nmax_workers = {workers}\n[paths]\ndata_dir = "data"\n'
    return cohort_config(tmp, '["slides/*.svs"]', extra=paths)


def add(tmp: Path, *slides: Path) -> None:
    (tmp / "slides").mkdir(parents=True, exist_ok=True)
    for s in slides:
        shutil.copy(s, tmp / "slides" / s.name)


def run_json(cfg: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = run(RunOptions(config=cfg, json=True))
    out = capsys.readouterr()
    return code, json.loads(out.out)["workflows"][0] | {"_stderr": out.err}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_summary_rows_match_the_per_slide_manifests_and_cells_tables(tmp_path, made, capsys):
    add(tmp_path, *made[:2])
    code, wf = run_json(config(tmp_path), capsys)
    assert code == 0, wf["_stderr"]
    results = tmp_path / "data" / "results" / "lab" / wf["id"]
    rows = read_csv(results / "cohort" / "summary.csv")
    assert [r["slide_id"] for r in rows] == ["case0", "case1"]
    for row in rows:
        mask = json.loads((results / f"{row['slide_id']}-mask" / "manifest.json").read_text())
        cells_dir = results / f"{row['slide_id']}-cells"
        cells = json.loads((cells_dir / "manifest.json").read_text())
        assert (
            row["path"]
            == mask["slide"]["path"]
            == str((tmp_path / "slides").resolve() / f"{row['slide_id']}.svs")
        )
        assert row["state"] == "SUCCEEDED"
        m = mask["mask"]
        area = m["tissue_fraction"] * m["shape"][0] * m["shape"][1] * m["mpp"] ** 2 / 1e6
        assert float(row["tissue_area_mm2"]) == pytest.approx(area, rel=1e-4)
        assert int(row["cells"]) == cells["cells"] > 0
        assert float(row["cells_per_mm2"]) == pytest.approx(cells["cells"] / area, rel=1e-4)
        areas = [float(r["area_um2"]) for r in read_csv(cells_dir / "cells.csv")]
        assert float(row["nucleus_area_mean_um2"]) == pytest.approx(
            statistics.mean(areas), abs=1e-3
        )
        assert float(row["nucleus_area_median_um2"]) == pytest.approx(
            statistics.median(areas), abs=1e-3
        )
        assert row["model"] == cells["model"]["name"] == "classical"
        assert row["model_sha256"] == cells["model"]["sha256"]
        assert row["device"] == cells["model"]["device"]
        assert row["error"] == ""
        # cells.parquet beside cells.geojson: the same cells as cells.csv, with the job's id
        table = pq.read_table(cells_dir / "cells.parquet").to_pylist()
        assert [t["id"] for t in table] == [r["id"] for r in read_csv(cells_dir / "cells.csv")]
        assert {t["job_id"] for t in table} == {row["cells_job_id"]}
        assert row["cells_parquet"] == str(cells_dir / "cells.parquet")
    parquet = pq.read_table(results / "cohort" / "summary.parquet").to_pylist()
    assert [p["slide_id"] for p in parquet] == ["case0", "case1"]
    assert [p["cells"] for p in parquet] == [int(r["cells"]) for r in rows]
    # --json: per-slide rows, the same cells as the summary
    cohort = wf["cohort"]
    assert (cohort["slides"], cohort["succeeded"], cohort["failed"]) == (2, 2, 0)
    assert [(r["slide_id"], r["cells"], r["jobs"]) for r in cohort["rows"]] == [
        (r["slide_id"], int(r["cells"]), {"mask": "SUCCEEDED", "cells": "SUCCEEDED"}) for r in rows
    ]
    # `wsitui status --json` reads the same rows from the data dir
    assert status(tmp_path / "data", as_json=True) == 0
    stored = json.loads(capsys.readouterr().out)[0]["cohort"]
    assert [r["cells"] for r in stored["rows"]] == [r["cells"] for r in cohort["rows"]]


def test_a_rerun_with_one_slide_added_runs_only_that_slides_chain(tmp_path, made, capsys):
    add(tmp_path, *made[:2])
    cfg = config(tmp_path)
    code, first = run_json(cfg, capsys)
    assert code == 0
    before = {j["key"]: (j["started_at"], j["attempt"]) for j in first["jobs"]}
    add(tmp_path, made[2])
    code, second = run_json(cfg, capsys)
    assert code == 0
    assert second["id"] == first["id"]
    after = {j["key"]: (j["started_at"], j["attempt"]) for j in second["jobs"]}
    assert {k: after[k] for k in before} == before  # nothing of the first two ran again
    assert sorted(set(after) - set(before)) == ["case2-cells", "case2-mask"]
    assert "lab/study: 1 new slide of 3" in second["_stderr"]
    rows = read_csv(tmp_path / "data" / "results" / "lab" / second["id"] / "cohort" / "summary.csv")
    assert [(r["slide_id"], r["state"]) for r in rows] == [
        ("case0", "SUCCEEDED"),
        ("case1", "SUCCEEDED"),
        ("case2", "SUCCEEDED"),
    ]
    # a removed slide is reported and its results kept
    (tmp_path / "slides" / "case0.svs").unlink()
    code, third = run_json(cfg, capsys)
    assert code == 0
    assert "slide " in third["_stderr"] and "case0.svs is no longer listed" in third["_stderr"]
    assert (tmp_path / "data" / "results" / "lab" / third["id"] / "case0-cells").is_dir()
    listed = [r["slide_id"] for r in third["cohort"]["rows"] if r["listed"]]
    assert listed == ["case1", "case2"]


def test_a_slide_that_cannot_be_read_fails_only_its_own_chain(tmp_path, made, capsys):
    add(tmp_path, made[0], made[1])
    corrupt_tiles(made[2], tmp_path / "slides" / "broken.svs")  # opens, its tiles do not read
    (tmp_path / "slides" / "junk.svs").write_bytes(b"not a slide" * 100)  # does not open
    code, wf = run_json(config(tmp_path), capsys)
    assert code == 1
    rows = {r["slide_id"]: r for r in wf["cohort"]["rows"]}
    assert rows["case0"]["state"] == rows["case1"]["state"] == "SUCCEEDED"
    for bad in ("broken", "junk"):
        assert rows[bad]["state"] == "FAILED"
        assert rows[bad]["jobs"] == {"mask": "FAILED", "cells": "BLOCKED"}
        assert rows[bad]["error"].startswith("mask: ")
    summary = {
        r["slide_id"]: r
        for r in read_csv(
            tmp_path / "data" / "results" / "lab" / wf["id"] / "cohort" / "summary.csv"
        )
    }
    assert summary["junk"]["state"] == "FAILED"
    assert "junk.svs" in summary["junk"]["error"]
    assert summary["case0"]["state"] == "SUCCEEDED" and int(summary["case0"]["cells"]) > 0


def test_headless_shows_one_progress_line_for_the_cohort(tmp_path, made, capsys):
    add(tmp_path, *made[:2])
    code = run(RunOptions(config=config(tmp_path)))  # captured: not a terminal, plain lines
    out = capsys.readouterr().out
    assert code == 0
    assert "[TISSUE_MASK]" not in out  # no line per job
    lines = [ln for ln in out.splitlines() if "lab/study cohort:" in ln]
    assert lines
    assert re.search(
        r"lab/study cohort: 2/2 slides done, 0 failed, 0 running · [0-9.]+ slides/min · ETA 0s$",
        lines[-1],
    ), lines
    assert "cohort/summary.csv" in out
    # --verbose: a line per job as for any workflow
    other = tmp_path / "verbose"
    add(other, made[0])
    assert run(RunOptions(config=config(other), verbose=True)) == 0
    out = capsys.readouterr().out
    assert "lab/study · case0-mask [TISSUE_MASK] (case0) SUCCEEDED" in out
    assert "lab/study cohort:" not in out


def test_the_progress_line_reads_counts_rate_and_eta_from_measured_throughput():
    from wsitui.core.records import Job, JobState

    def job(sid: str, key: str, state: JobState, start: float | None, end: float | None) -> Job:
        return Job(
            id=f"w.{sid}-{key}",
            key=f"{sid}-{key}",
            workflow_id="w",
            tenant="lab",
            job_type="TISSUE_MASK",  # type: ignore[arg-type]
            slide=f"/s/{sid}.svs",
            branch=sid,
            depends_on=(),
            params={},
            state=state,
            started_at=start,
            finished_at=end,
        )

    slides = [f"s{i}" for i in range(10)]
    done_before = [job("s0", "mask", JobState.SUCCEEDED, 1.0, 2.0)]
    t = CohortTracker("lab", "study", "w", slides, done_before, clock=lambda: 100.0)
    assert (
        t.line(100.0) == "lab/study cohort: 1/10 slides done, 0 failed, 0 running · rate – · ETA –"
    )
    t.update(job("s1", "mask", JobState.RUNNING, 100.0, None))
    t.update(job("s2", "mask", JobState.RUNNING, 100.0, None))
    t.update(job("s1", "mask", JobState.SUCCEEDED, 100.0, 130.0))
    t.update(job("s2", "mask", JobState.FAILED, 100.0, 160.0))
    # 2 slides in this run over 60 s since its first start: 2 slides/min; 7 left: 3m30s
    assert t.line(160.0) == (
        "lab/study cohort: 3/10 slides done, 1 failed, 0 running · 2.0 slides/min · ETA 3m30s"
    )
