"""Writing measured cells: cells.geojson with the measurements merged in, measurements.parquet.

The GeoJSON keeps each upstream Feature as it was (id, polygon, classification, the
measurements SEGMENT_CELLS wrote) and adds the new measurements to `properties.measurements`,
QuPath's layout, one Feature a line like `cells/write.py`. A value that cannot be measured (a
polygon too small to cover a pixel centre, a ring with no pixel) is left out of the GeoJSON
(QuPath shows it as missing) and null in the table: JSON stays strict. measurements.parquet has
one row per cell: its `id` (the Feature's), `tile`, the centroid and every new measurement,
with the same rounded numbers as the GeoJSON. Both are written to hidden temporaries, a row
group per ROW_GROUP cells (memory stays bounded), and renamed into place through the fence.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from wsitui.jobs.common.files import Fence, commit, current_fence
from wsitui.jobs.measure_cells.names import ALL

if TYPE_CHECKING:
    import pyarrow as pa

GEOJSON_FILE = "cells.geojson"
PARQUET_FILE = "measurements.parquet"
ROW_GROUP = 16384  # rows buffered as Python lists: ~20 MB at 42 columns
DECIMALS = 5
CENTROID = ("Centroid X µm", "Centroid Y µm")
COLUMNS = ("id", "tile", *CENTROID, *ALL)


def _schema() -> pa.Schema:
    # pyarrow is imported by a running MEASURE_CELLS job only (~0.3 s), not by every face.
    import pyarrow as pa

    return pa.schema(
        [pa.field("id", pa.string()), pa.field("tile", pa.string())]
        + [pa.field(n, pa.float64()) for n in CENTROID + ALL]
    )


class MeasureWriter:
    def __init__(self, out: Path, fence: Fence | None = None) -> None:
        self.out = out
        self._fence = fence if fence is not None else current_fence()
        self._tmp = [out / f".{GEOJSON_FILE}.partial", out / f".{PARQUET_FILE}.partial"]
        self._geo: IO[str] = self._tmp[0].open("w", encoding="utf-8")
        self._geo.write('{"type":"FeatureCollection","features":[\n')
        import pyarrow.parquet as pq

        self._schema = _schema()
        self._pq = pq.ParquetWriter(self._tmp[1], self._schema, compression="zstd")
        self._buf: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        self.count = 0

    def add(self, features: list[dict[str, Any]], rows: np.ndarray, tile: str) -> None:
        """Write `features` with `rows` (from measure_tile, in the same order) merged in."""
        values = np.round(rows[:, 1:], DECIMALS)
        for feature, vals in zip(features, values, strict=True):
            props = feature.setdefault("properties", {})
            m = props.setdefault("measurements", {})
            new = {n: float(v) for n, v in zip(ALL, vals.tolist(), strict=True) if math.isfinite(v)}
            m.update(new)
            text = json.dumps(feature, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
            self._geo.write((",\n" if self.count else "") + text)
            self._buf["id"].append(str(feature.get("id", "")))
            self._buf["tile"].append(tile)
            for name in CENTROID:
                v = m.get(name)
                self._buf[name].append(float(v) if isinstance(v, int | float) else None)
            for name in ALL:
                self._buf[name].append(new.get(name))
            self.count += 1
        if len(self._buf["id"]) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._buf["id"]:
            import pyarrow as pa

            self._pq.write_table(pa.table(self._buf, schema=self._schema))
            self._buf = {name: [] for name in COLUMNS}

    def close(self) -> None:
        self._geo.write("\n]}\n")
        self._geo.close()
        self._flush()
        self._pq.close()
        try:
            commit(self._tmp[0], self.out / GEOJSON_FILE, self._fence)
            commit(self._tmp[1], self.out / PARQUET_FILE, self._fence)
        finally:
            for tmp in self._tmp:
                tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        if not self._geo.closed:
            self._geo.close()
        try:
            self._pq.close()
        finally:
            for tmp in self._tmp:
                tmp.unlink(missing_ok=True)

    def __enter__(self) -> MeasureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
