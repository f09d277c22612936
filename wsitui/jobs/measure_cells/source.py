"""The cells of the upstream SEGMENT_CELLS job, read region by region from its cells.geojson.

cells.geojson is the cheapest correct input: it holds exactly the cells the job kept (seams
settled, polygons repaired, size filters applied; its shards hold neither) and SEGMENT_CELLS
writes it one Feature a line (`cells/write.py`). One pass indexes it: each cell's byte range
and bounding box (level-0 px), ~40 bytes a cell; a tile then reads only the lines of the cells
it needs, so memory does not grow with the slide. Lines are parsed with orjson when it is
installed (~3x faster than json; the same values).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsitui.core.executor import JobError
from wsitui.slides.errors import quoted

try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency, the standard parser a fallback
    _loads = json.loads

CELLS_FILE = "cells.geojson"
_FEATURE = b'{"type":"Feature"'


@dataclass(frozen=True, slots=True)
class CellIndex:
    path: Path
    offset: np.ndarray  # (n,) int64: byte offset of each feature's line
    length: np.ndarray  # (n,) int32: its length without the trailing ",\n"
    bbox: np.ndarray  # (n, 4) float64: x0, y0, x1, y1 in level-0 px

    def __len__(self) -> int:
        return len(self.offset)

    def within(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Indices of the cells whose bounding box meets [x0, x1) x [y0, y1)."""
        b = self.bbox
        return np.nonzero((b[:, 2] >= x0) & (b[:, 0] < x1) & (b[:, 3] >= y0) & (b[:, 1] < y1))[0]

    def features(self, which: np.ndarray) -> list[dict[str, Any]]:
        """The features `which`, in that order."""
        order = np.argsort(self.offset[which], kind="stable")
        out: list[dict[str, Any]] = [{}] * len(which)
        with self.path.open("rb") as f:
            for k in order.tolist():
                i = int(which[k])
                f.seek(int(self.offset[i]))
                out[k] = _loads(f.read(int(self.length[i])))
        return out


def ring_of(feature: dict[str, Any]) -> np.ndarray:
    """The exterior ring (n, 2) of a cell's Polygon."""
    return np.asarray(feature["geometry"]["coordinates"][0], np.float64)


def index_cells(results_dir: Path, check_cancel: Callable[[], None]) -> CellIndex:
    path = Path(results_dir) / CELLS_FILE
    if not path.is_file():
        raise JobError(f"{quoted(path)} does not exist; run the SEGMENT_CELLS job (again) first")
    offsets: list[int] = []
    lengths: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    pos = 0
    with path.open("rb") as f:
        for line in f:
            start, pos = pos, pos + len(line)
            if not line.startswith(_FEATURE):
                continue
            body = line.rstrip(b"\r\n")
            body = body[:-1] if body.endswith(b",") else body
            try:
                ring = ring_of(_loads(body))
                box = (
                    float(ring[:, 0].min()),
                    float(ring[:, 1].min()),
                    float(ring[:, 0].max()),
                    float(ring[:, 1].max()),
                )
            except (ValueError, KeyError, IndexError, TypeError) as e:
                raise JobError(
                    f"{quoted(path)} has an unreadable cell at byte {start} ({e}); rerun the "
                    "SEGMENT_CELLS job"
                ) from e
            offsets.append(start)
            lengths.append(len(body))
            boxes.append(box)
            if len(offsets) % 20000 == 0:
                check_cancel()
    return CellIndex(
        path,
        np.asarray(offsets, np.int64),
        np.asarray(lengths, np.int32),
        np.asarray(boxes, np.float64).reshape(-1, 4),
    )
