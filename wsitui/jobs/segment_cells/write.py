"""Writing the cells a job kept: QuPath-ready GeoJSON, a CSV table, both streamed.

`cells.geojson` is a FeatureCollection QuPath 0.4-0.6 imports as detections: each Feature has
a UUID `id` (derived from the job and the cell's position, so a resumed job writes the same
ids), a valid Polygon in level-0 px with (0, 0) at the image's top-left corner,
`properties.objectType = "detection"`, a classification with a colour, and `measurements` as a
name -> number dict. Features are written one at a time to a temporary file that is renamed
when complete: memory does not grow with the number of cells, and a reader never sees half a
file. Numbers are finite (strict JSON).

Measurements are taken on the polygon as written (after any repair), and a polygon smaller
than `min_area_um2` there is not written: the size filter holds for every cell in the files.
Nor is one larger than `max_area_um2` (a disc of the job's `max_nucleus_um`): no nucleus is that
large, and the tile overlap is sized for nuclei up to it.
The files are renamed into place through the job's write fence (`common/files.py`).
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import uuid
from pathlib import Path
from typing import IO

import numpy as np
import shapely
from shapely.geometry import Polygon

from wsitui.jobs.common.cells_parquet import CELLS_PARQUET, write_cells_parquet
from wsitui.jobs.common.files import Fence, commit
from wsitui.jobs.common.staged import StagedFiles
from wsitui.jobs.segment_cells.extract import CellRecords

NUCLEUS = {"name": "Nucleus", "color": [0, 90, 200]}
_NAMESPACE = uuid.UUID("6f1c7a52-3f1e-4e8e-9d7c-1f0e8d9e2a11")
CSV_FIELDS = (
    "id",
    "centroid_x_px",
    "centroid_y_px",
    "centroid_x_um",
    "centroid_y_um",
    "area_um2",
    "perimeter_um",
    "tile",
)


def _r(v: float, nd: int = 3) -> float:
    v = round(float(v), nd)
    if not math.isfinite(v):
        raise ValueError("a measurement is not a finite number")
    return v


def valid_ring(ring: np.ndarray) -> list[list[float]]:
    """A closed, valid exterior ring (repaired when rounding made it touch itself)."""
    return [[float(x), float(y)] for x, y in valid_polygon(ring).exterior.coords]


def valid_polygon(ring: np.ndarray) -> Polygon:
    """The valid polygon written for a ring: rounded to 0.01 px, repaired, counter-clockwise."""
    poly = Polygon(np.round(ring, 2))
    if not poly.is_valid:
        fixed = shapely.make_valid(poly)
        parts = [g for g in getattr(fixed, "geoms", [fixed]) if isinstance(g, Polygon)]
        poly = max(parts, key=lambda g: g.area) if parts else poly
    return shapely.orient_polygons(poly)  # RFC 7946: exterior counter-clockwise


class CellWriter(StagedFiles):
    """Streams cells into cells.geojson (+ .gz) and cells.csv in `out`."""

    def __init__(
        self,
        out: Path,
        *,
        job_id: str,
        mpp: float,
        gz: bool,
        min_area_um2: float = 0.0,
        max_area_um2: float = math.inf,
        fence: Fence | None = None,
    ) -> None:
        super().__init__(out, fence)
        self.job_id, self.mpp = job_id, mpp
        self.min_area_um2 = min_area_um2
        self.max_area_um2 = max_area_um2
        self.too_large = 0  # over max_area_um2: larger than any nucleus the job allows
        self.count = 0
        self.dropped = 0  # under min_area_um2 once traced and repaired
        self._tmp = [self.partial("cells.geojson"), self.partial("cells.csv")]
        self._geo: IO[str] = self._tmp[0].open("w", encoding="utf-8")
        self._gz: IO[str] | None = None
        if gz:
            self._tmp.append(self.partial("cells.geojson.gz"))
            self._gz = gzip.open(  # noqa: SIM115 - closed in close() / release()
                self._tmp[2], "wt", encoding="utf-8", compresslevel=6
            )
        self._csv_file = self._tmp[1].open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(CSV_FIELDS)
        self._emit('{"type":"FeatureCollection","features":[\n')

    def _emit(self, text: str) -> None:
        self._geo.write(text)
        if self._gz is not None:
            self._gz.write(text)

    def add(self, rec: CellRecords, keep: np.ndarray, tile: tuple[int, int]) -> np.ndarray:
        """Write the kept cells of a tile; returns the mask of those written."""
        mpp = self.mpp
        tile_name = f"{tile[0]}_{tile[1]}"
        written = np.zeros(len(rec), bool)
        for i in np.nonzero(keep)[0]:
            poly = valid_polygon(rec.ring(int(i)))
            area_um2 = poly.area * mpp * mpp
            if poly.is_empty or area_um2 < self.min_area_um2:
                self.dropped += 1
                continue
            if area_um2 > self.max_area_um2:
                self.too_large += 1
                continue
            cx, cy = (float(v) for v in rec.centroid[i])
            cid = str(uuid.uuid5(_NAMESPACE, f"{self.job_id}:{cx:.2f}:{cy:.2f}"))
            measurements = {
                "Area µm^2": _r(area_um2),
                "Perimeter µm": _r(poly.exterior.length * mpp),
                "Centroid X µm": _r(cx * mpp),
                "Centroid Y µm": _r(cy * mpp),
            }
            feature = {
                "type": "Feature",
                "id": cid,
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[float(x), float(y)] for x, y in poly.exterior.coords]],
                },
                "properties": {
                    "objectType": "detection",
                    "classification": NUCLEUS,
                    "measurements": measurements,
                },
            }
            text = json.dumps(feature, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
            self._emit((",\n" if self.count else "") + text)
            self._csv.writerow(
                (
                    cid,
                    _r(cx, 2),
                    _r(cy, 2),
                    measurements["Centroid X µm"],
                    measurements["Centroid Y µm"],
                    measurements["Area µm^2"],
                    measurements["Perimeter µm"],
                    tile_name,
                )
            )
            self.count += 1
            written[i] = True
        return written

    def close(self) -> None:
        """Finish the files and move them into place."""
        self._emit("\n]}\n")
        for f in (self._geo, self._gz, self._csv_file):
            if f is not None:
                f.close()
        names = ["cells.geojson", "cells.csv", "cells.geojson.gz"]
        parquet = self.out / f".{CELLS_PARQUET}.partial"
        try:
            parquet = write_cells_parquet(self._tmp[1], self.out, job_id=self.job_id)
            for tmp, name in zip(self._tmp, names, strict=False):
                commit(tmp, self.out / name, self._fence)
            commit(parquet, self.out / CELLS_PARQUET, self._fence)
        finally:
            self.discard(parquet)

    def release(self) -> None:
        for f in (self._geo, self._gz, self._csv_file):
            if f is not None and not f.closed:
                f.close()
