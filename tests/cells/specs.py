"""The workflow the SEGMENT_CELLS tests and benchmarks run: a tissue mask, then cells on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wsitui.core.records import JobSpec, WorkflowSpec


def mask_and_cells(slide: Path, name: str = "w", **params: Any) -> WorkflowSpec:
    return WorkflowSpec(
        name=name,
        jobs=(
            JobSpec(id="mask", type="TISSUE_MASK", slide=str(slide)),
            JobSpec(
                id="cells",
                type="SEGMENT_CELLS",
                slide=str(slide),
                depends_on=("mask",),
                params=params,
            ),
        ),
    )
