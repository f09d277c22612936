"""What finished jobs say of themselves through the executor contract: TISSUE_MASK's found line
(the detail screen) and the cohort summary columns TISSUE_MASK and SEGMENT_CELLS fill."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
from PIL import Image

from wsitui.jobs.common.cells_parquet import CELLS_PARQUET, write_cells_parquet
from wsitui.jobs.segment_cells import summary as cells_summary
from wsitui.jobs.segment_cells.write import CSV_FIELDS
from wsitui.jobs.tissue_mask.executor import TissueMaskExecutor, run_tissue_mask

MPP = 0.5  # what a PNG without a pixel size is assumed to have


def _mask_manifest(tmp: Path, img: np.ndarray) -> dict:
    Image.fromarray(img).save(tmp / "slide.png")
    return run_tissue_mask(tmp / "slide.png", tmp / "out").model_dump(mode="json")


def test_the_found_line_and_summary_give_the_tissue_area_and_share_of_the_slide(tmp_path):
    img = np.full((1200, 1600, 3), 245, np.uint8)
    img[300:900, 400:1000] = (200, 120, 170)  # 600 x 600 px of tissue: 0.09 mm², 18.75 %
    manifest = _mask_manifest(tmp_path, img)
    line = TissueMaskExecutor.found_line(manifest)
    got = re.fullmatch(r"tissue ([\d.]+) mm² · ([\d.]+)% of the slide · (\d+) of (\d+) tiles", line)
    assert got, line
    assert abs(float(got[1]) - 0.09) <= 0.01
    assert abs(float(got[2]) - 18.75) <= 1.5
    assert 0 < int(got[3]) < int(got[4])
    fields = TissueMaskExecutor.summary_fields(manifest, tmp_path / "out")
    assert set(fields) <= set(TissueMaskExecutor.summary_columns)
    assert abs(float(fields["tissue_area_mm2"]) - 600 * 600 * MPP**2 / 1e6) <= 0.01


def test_a_slide_of_glass_says_no_tissue_found_and_an_area_of_zero(tmp_path):
    manifest = _mask_manifest(tmp_path, np.full((600, 800, 3), 243, np.uint8))
    assert TissueMaskExecutor.found_line(manifest) == "no tissue found"
    assert TissueMaskExecutor.summary_fields(manifest, tmp_path) == {"tissue_area_mm2": 0.0}


def test_a_manifest_without_a_mask_says_nothing_rather_than_raising(tmp_path):
    for manifest in ({}, {"mask": {"shape": "x"}}, {"mask": None}):
        assert TissueMaskExecutor.found_line(manifest) == ""
        assert TissueMaskExecutor.summary_fields(manifest, tmp_path) == {}


def _cells_job(out: Path, areas: list[float], *, parquet: bool) -> dict:
    out.mkdir()
    with (out / "cells.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for i, a in enumerate(areas):
            row = {"id": f"c{i}", "area_um2": a, "tile": "0_0"}
            w.writerow([row.get(name, float(i)) for name in CSV_FIELDS])
    if parquet:
        write_cells_parquet(out / "cells.csv", out, job_id="cells-1").replace(out / CELLS_PARQUET)
        (out / "cells.csv").unlink()  # the table is read from the parquet
    return {
        "job_id": "cells-1",
        "cells": len(areas),
        "model": {"name": "classical", "sha256": "", "device": "cpu"},
    }


def test_a_cells_job_fills_its_count_model_and_nucleus_areas(tmp_path):
    out = tmp_path / "cells"
    manifest = _cells_job(out, [10.0, 20.0, 60.0], parquet=True)
    assert cells_summary.summary_fields(manifest, out) == {
        "cells": 3,
        "model": "classical",
        "model_sha256": None,  # no hash (a built-in model): empty, not ""
        "device": "cpu",
        "cells_job_id": "cells-1",
        "cells_parquet": str(out / CELLS_PARQUET),
        "nucleus_area_mean_um2": 30.0,
        "nucleus_area_median_um2": 20.0,
    }
    assert set(cells_summary.summary_fields(manifest, out)) <= set(cells_summary.SUMMARY_COLUMNS)


def test_a_cells_job_without_its_parquet_table_reads_the_csv_and_without_a_count_nothing(
    tmp_path,
):
    out = tmp_path / "cells"
    manifest = _cells_job(out, [4.0, 8.0], parquet=False)
    fields = cells_summary.summary_fields(manifest, out)
    assert "cells_parquet" not in fields
    assert (fields["nucleus_area_mean_um2"], fields["nucleus_area_median_um2"]) == (6.0, 6.0)
    assert cells_summary.summary_fields({"model": {}}, out) == {}
