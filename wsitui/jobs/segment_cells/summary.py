"""What a finished SEGMENT_CELLS job puts in its slide's row of a cohort summary.

`SegmentCellsExecutor.summary_columns` / `summary_fields` (the executor contract) are these: the
cell count and the model from the manifest, nucleus area mean and median from the job's
cells.parquet (cells.csv for a job written before the parquet table existed).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wsitui.jobs.common.cells_parquet import CELLS_PARQUET, read_column

SUMMARY_COLUMNS = (
    "cells",
    "nucleus_area_mean_um2",
    "nucleus_area_median_um2",
    "model",
    "model_sha256",
    "device",
    "cells_job_id",
    "cells_parquet",
)


def nucleus_areas(out: Path) -> np.ndarray | None:
    """Nucleus areas (µm²) of a cells job: from cells.parquet, else cells.csv; None when
    neither reads."""
    if (out / CELLS_PARQUET).is_file():
        try:
            return read_column(out / CELLS_PARQUET, "area_um2")
        except (OSError, ValueError, KeyError):
            pass
    try:
        with (out / "cells.csv").open(newline="", encoding="utf-8") as f:
            return np.array([float(r["area_um2"]) for r in csv.DictReader(f)], dtype=float)
    except (OSError, ValueError, KeyError):
        return None


def summary_fields(manifest: Mapping[str, Any], results_dir: Path) -> dict[str, object]:
    """The summary columns of a finished SEGMENT_CELLS job ({} without a cell count)."""
    if "cells" not in manifest:
        return {}
    model = manifest.get("model") or {}
    fields: dict[str, object] = {
        "cells": int(manifest["cells"]),
        "model": model.get("name"),
        "model_sha256": model.get("sha256") or None,
        "device": model.get("device"),
        "cells_job_id": manifest.get("job_id"),
    }
    if (results_dir / CELLS_PARQUET).is_file():
        fields["cells_parquet"] = str(results_dir / CELLS_PARQUET)
    areas = nucleus_areas(results_dir)
    if areas is not None and len(areas):
        fields["nucleus_area_mean_um2"] = round(float(np.mean(areas)), 4)
        fields["nucleus_area_median_um2"] = round(float(np.median(areas)), 4)
    return fields
