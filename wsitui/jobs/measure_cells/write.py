"""Writing measured cells: cells.geojson with the measurements merged in, measurements.parquet.

The GeoJSON keeps each upstream Feature as it was (id, polygon, classification, the
measurements SEGMENT_CELLS wrote) and adds the new measurements to `properties.measurements`,
QuPath's layout, one Feature a line like `cells/write.py`. A value that cannot be measured (a
polygon too small to cover a pixel centre, a ring with no pixel) is left out of the GeoJSON
(QuPath shows it as missing) and null in the table: JSON stays strict. measurements.parquet has
one row per cell: its `id` (the Feature's), `tile`, the centroid and every new measurement,
with the same rounded numbers as the GeoJSON. Both are written to hidden temporaries, a row
group per ROW_GROUP cells (memory stays bounded), and renamed into place through the fence.

Speed (profiled: writing was a third of a 40k x 30k job): Features are serialised with orjson
when it is installed (the same values; a number under 1e-4 reads `0.00005` where json writes
`5e-05`), the measurements merged in one dict update per cell, and the table's columns built
from numpy buffers (pyarrow's `pa.array` imports pandas, ~1 s, on first use).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from wsitui.jobs.common.files import Fence, commit
from wsitui.jobs.common.staged import StagedFiles
from wsitui.jobs.measure_cells.names import ALL

if TYPE_CHECKING:
    import pyarrow as pa

try:
    from orjson import dumps as _orjson_dumps

    def _dumps(feature: dict[str, Any]) -> bytes:
        return _orjson_dumps(feature)

except ImportError:  # pragma: no cover - orjson is a dependency, json the fallback

    def _dumps(feature: dict[str, Any]) -> bytes:
        text = json.dumps(feature, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")


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


class MeasureWriter(StagedFiles):
    def __init__(self, out: Path, fence: Fence | None = None) -> None:
        super().__init__(out, fence)
        self._tmp = [self.partial(GEOJSON_FILE), self.partial(PARQUET_FILE)]
        try:
            self._geo: IO[bytes] = self._tmp[0].open("wb")
            self._geo.write(b'{"type":"FeatureCollection","features":[\n')
            import pyarrow.parquet as pq

            self._schema = _schema()
            self._pq = pq.ParquetWriter(self._tmp[1], self._schema, compression="zstd")
        except BaseException:
            # A disk that fills or refuses between the two: the file opened is closed and the
            # partial files go (a half-made writer is never entered, so never aborted).
            self.abort()
            raise
        self._ids: list[str] = []
        self._tiles: list[str] = []
        self._values: list[np.ndarray] = []  # per add: (n, 2 + len(ALL)) centroid, ALL
        self._buffered = 0
        self.count = 0

    def add(self, features: list[dict[str, Any]], rows: np.ndarray, tile: str) -> None:
        """Write `features` with `rows` (from measure_tile, in the same order) merged in."""
        values = np.round(rows[:, 1:], DECIMALS)
        whole = np.isfinite(values).all(axis=1)
        table = np.full((len(features), len(CENTROID) + len(ALL)), np.nan)
        table[:, len(CENTROID) :] = values
        for i, (feature, vals) in enumerate(zip(features, values.tolist(), strict=True)):
            props = feature.setdefault("properties", {})
            m = props.setdefault("measurements", {})
            if whole[i]:
                m.update(zip(ALL, vals, strict=True))
            else:
                m.update((n, v) for n, v in zip(ALL, vals, strict=True) if math.isfinite(v))
            self._geo.write((b",\n" if self.count else b"") + _dumps(feature))
            self._ids.append(str(feature.get("id", "")))
            for j, name in enumerate(CENTROID):
                v = m.get(name)
                if isinstance(v, int | float):
                    table[i, j] = float(v)
            self.count += 1
        self._tiles.extend([tile] * len(features))
        self._values.append(table)
        self._buffered += len(features)
        if self._buffered >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        import pyarrow as pa

        values = np.concatenate(self._values)
        columns = [_strings(self._ids), _strings(self._tiles)]
        columns += [_floats(values[:, j]) for j in range(values.shape[1])]
        self._pq.write_table(pa.Table.from_arrays(columns, schema=self._schema))
        self._ids, self._tiles, self._values, self._buffered = [], [], [], 0

    def close(self) -> None:
        self._geo.write(b"\n]}\n")
        self._geo.close()
        self._flush()
        self._pq.close()
        try:
            commit(self._tmp[0], self.out / GEOJSON_FILE, self._fence)
            commit(self._tmp[1], self.out / PARQUET_FILE, self._fence)
        finally:
            self.discard()

    def release(self) -> None:
        geo, parquet = getattr(self, "_geo", None), getattr(self, "_pq", None)
        if geo is not None and not geo.closed:
            geo.close()
        if parquet is not None:
            parquet.close()


def _floats(values: np.ndarray) -> pa.Array:
    """A float64 column of `values`, NaN as null."""
    import pyarrow as pa

    values = np.ascontiguousarray(values, np.float64)
    valid = np.packbits(~np.isnan(values), bitorder="little")
    return pa.Array.from_buffers(
        pa.float64(), len(values), [pa.py_buffer(valid), pa.py_buffer(values)]
    )


def _strings(items: list[str]) -> pa.Array:
    """A string column of `items`."""
    import pyarrow as pa

    data = [s.encode("utf-8") for s in items]
    offsets = np.zeros(len(data) + 1, np.int32)
    np.cumsum([len(b) for b in data], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    )
