"""The executors a face hands to the engine: one per job type that can run."""

from __future__ import annotations

from wsitui.core.executor import Executor
from wsitui.jobs.measure_cells.executor import MeasureCellsExecutor
from wsitui.jobs.segment_cells.executor import SegmentCellsExecutor
from wsitui.jobs.tissue_mask import TissueMaskExecutor


def default_executors() -> list[Executor]:
    return [TissueMaskExecutor(), SegmentCellsExecutor(), MeasureCellsExecutor()]
