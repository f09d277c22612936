"""One tile's model call and records, the same on every backend (local threads, Dask workers).

An out-of-domain tile (DAB-like stain, `domain.py`) gets instanseg's post-processing tightened
(`domain.TIGHT`) when the model takes such kwargs; the records carry the tile's chromogen share
and whether it was out of domain (the job's domain check reads them from the shards).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from wsitui.jobs.common.grid import Tile
from wsitui.jobs.segment_cells.domain import TIGHT, out_of_domain
from wsitui.jobs.segment_cells.extract import CellRecords, extract
from wsitui.jobs.segment_cells.plan import CellPlan
from wsitui.jobs.segment_cells.source import TileImage


def takes_postprocess(predict: Callable[..., np.ndarray]) -> bool:
    """Whether a model's `predict` takes `postprocess` (a test double may not)."""
    try:
        return "postprocess" in inspect.signature(predict).parameters
    except (TypeError, ValueError):
        return False


def predictor(model: Any, odd: bool) -> Callable[[np.ndarray], np.ndarray]:
    """`model.predict`, tightened for out-of-domain tiles when the model takes
    `postprocess` (a model without such kwargs, e.g. a test double, as it is)."""
    if not odd or not takes_postprocess(model.predict):
        return model.predict  # type: ignore[no-any-return]
    return functools.partial(model.predict, postprocess=TIGHT)


def records(
    labels: np.ndarray, image: TileImage, plan: CellPlan, min_area_px: float
) -> CellRecords:
    """The tile's cell records from its labels (polygons, seam status, domain info)."""
    return traced(
        labels,
        image.tile,
        (image.h, image.w),
        image.chromogen,
        TraceGeometry(plan.scale, plan.geometry.level_dimensions, plan.band, min_area_px),
    )


@dataclass(frozen=True, slots=True)
class TraceGeometry:
    """What tracing needs of the plan (small and picklable: tiles are traced in worker
    processes on a GPU, `backends/local.py`)."""

    scale: float
    level_dims: tuple[int, int]
    band: int
    min_area_px: float


def traced(
    labels: np.ndarray,
    tile: Tile,
    valid: tuple[int, int],
    chromogen: float,
    geometry: TraceGeometry,
) -> CellRecords:
    """`records` from plain values: runs in this process or in a worker process."""
    rec = extract(
        labels,
        tile,
        scale=geometry.scale,
        valid=valid,
        level_dims=geometry.level_dims,
        band=geometry.band,
        min_area=geometry.min_area_px,
    )
    rec.info = np.array([chromogen, float(out_of_domain(chromogen))])
    return rec


def ready() -> bool:
    """A no-op a new worker process runs first: it imports this module (and numpy) before
    the first tile reaches it."""
    return True


def cells_in(rec: CellRecords) -> int:
    """Cells a tile's records count for progress (guests belong to a neighbour)."""
    return int(np.count_nonzero(rec.status != 2))
