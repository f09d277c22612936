"""A cohort row's cells per mm² is the finished count over the tissue area, never a count so
far over the whole area."""

from __future__ import annotations

from wsitui.core.records import Job, JobState
from wsitui.session.cohort_rows import slide_rows

INDEX = {"template": ["mask", "cells", "measure"], "slides": [{"id": "s1", "path": "s1.svs"}]}

TYPES = {"mask": "TISSUE_MASK", "cells": "SEGMENT_CELLS", "measure": "MEASURE_CELLS"}


def job(key: str, state: JobState, counters: dict[str, int] | None = None) -> Job:
    return Job(
        f"w.s1-{key}", f"s1-{key}", "w", "t", TYPES[key],
        "s1.svs", "s1", (), {}, state, counters=counters or {},
    )  # fmt: skip


def areas(j: Job) -> float | None:
    """The mask's tissue area once it has succeeded, as TissueAreas reads it."""
    return 0.17 if j.key == "s1-mask" and j.state is JobState.SUCCEEDED else None


def test_a_slide_still_segmenting_shows_its_cells_so_far_but_no_density():
    """case_3 at 38 % read 72 cells and 419 cells/mm² (72 over the whole tissue area); it
    finished at 296 cells, 1,724 per mm²."""
    mask = job("mask", JobState.SUCCEEDED)
    running = job("cells", JobState.RUNNING, {"cells": 72})
    (row,) = slide_rows(INDEX, [mask, running], areas)  # type: ignore[arg-type]
    assert row.cells == 72 and row.tissue_area_mm2 == 0.17
    assert row.cells_per_mm2 is None
    done = job("cells", JobState.SUCCEEDED, {"cells": 296})
    (row,) = slide_rows(INDEX, [mask, done], areas)  # type: ignore[arg-type]
    assert row.cells_per_mm2 == round(296 / 0.17, 3)


def test_measuring_the_cells_does_not_count_them_again_from_zero():
    """MEASURE_CELLS reports cells 0 when it starts and counts up as it measures: the row read
    0 cells and 0 per mm² for a slide whose segmentation had found 296."""
    chain = [
        job("mask", JobState.SUCCEEDED),
        job("cells", JobState.SUCCEEDED, {"cells": 296}),
        job("measure", JobState.RUNNING, {"cells": 0}),
    ]
    (row,) = slide_rows(INDEX, chain, areas)  # type: ignore[arg-type]
    assert row.cells == 296 and row.cells_per_mm2 == round(296 / 0.17, 3)
