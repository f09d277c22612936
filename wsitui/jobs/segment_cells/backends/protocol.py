"""The one contract both tile backends keep: `local` (this process) and `dask` (a cluster).

The executor plans, merges and writes; a backend only turns the planned tiles into shards:

    backend.describe()                       -> the model as the job plans with it
    backend.run_tiles(reader, plan, shards, ...) -> TileRun (same timings keys, same shards)

Only the backend that runs the tiles loads the model: `local` loads it here; `dask` reads its
pixel size and hash from the file (`model_info.py`) and its workers load it. Both write the same
shard per tile (`tile.py` turns labels into records for both) and report the same `Progress`,
so resume, merge, outputs, progress and counters do not depend on the backend. What one backend
cannot do is refused at submission (`refusals`), never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from wsitui.jobs.common.grid import Tile
from wsitui.jobs.common.shards import ShardStore
from wsitui.jobs.segment_cells.plan import CellPlan
from wsitui.slides.reader import SlideReader

# Seconds, the same keys from every backend: reading, the model and extraction summed over the
# threads (local) or workers (dask) that did them; `wait_read` the time the model waited for
# pixels (on a Dask worker a task reads, then predicts: all its reading is waited for).
TIMING_KEYS = ("read", "infer", "post", "wait_read")


class Segmenter(Protocol):
    """What the pipeline needs of a model (wsitui.models.LoadedModel, or a test double)."""

    pixel_size: float

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 RGB at `pixel_size` -> (B, H, W) int instance labels."""
        ...


class Described(Protocol):
    """The model as a job plans with it (loaded here, or read from its file for a cluster)."""

    name: str
    pixel_size: float
    sha256: str
    device: str
    is_classical: bool
    fallback_reason: str

    def manifest(self) -> dict[str, object]: ...


@dataclass(slots=True)
class Progress:
    tiles_done: int  # grid tiles settled: skipped (no tissue) + segmented (as the Dask backend)
    cells: int
    odd: int = 0  # tiles segmented this run that look out of domain (domain.py)


@dataclass(slots=True)
class TileRun:
    """What a backend's run used, for the manifest."""

    timings: dict[str, float]  # TIMING_KEYS
    model: dict[str, object]  # the model's manifest as it ran (precision, batch, device, ...)
    batch_size: int  # tiles per model call
    read_ahead: int = 0  # tiles read ahead of the model on this machine
    dask: dict[str, Any] | None = None  # scheduler, dashboard, workers, tiles_by_worker


class TileBackend(Protocol):
    name: str  # "local" | "dask": the manifest's `backend`

    def describe(self, check_cancel: Callable[[], None]) -> Described:
        """The model the tiles will run with; loads it only where the tiles run."""
        ...

    def run_tiles(
        self,
        reader: SlideReader,
        plan: CellPlan,
        shards: ShardStore,
        *,
        min_area_px: float,
        on_progress: Callable[[Progress], None],
        check_cancel: Callable[[], None],
        on_labels: Callable[[Tile, np.ndarray], None] | None,
    ) -> TileRun:
        """Segment every planned tile without a valid shard; shards hold the results."""
        ...


def refusals(backend: str, *, tile_labels: bool, batch_size: int | str) -> str | None:
    """Why params cannot run on `backend` (one line naming the fix), else None."""
    if backend != "dask":
        return None
    if tile_labels:
        return (
            "tile_labels is not available with backend = 'dask' (label images stay on the "
            "workers): set tile_labels = false or backend = 'local'"
        )
    if batch_size != "auto":
        return (
            f"batch_size = {batch_size} is not available with backend = 'dask' (a Dask worker "
            "runs one tile per task): remove batch_size or use backend = 'local'"
        )
    return None
