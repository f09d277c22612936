"""cells.parquet: a cells job's table in a columnar file, beside cells.geojson.

One row per cell, the same rows and values as cells.csv (id, centroid x / y in px and µm, area,
perimeter, tile) plus the job's id, so the files of a whole cohort concatenate into one table
and join the cohort summary on `cells_job_id`. Converted from the finished CSV in batches
(memory stays bounded whatever the cell count) with snappy compression: millions of cells
load in pandas / polars in about a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CELLS_PARQUET = "cells.parquet"
_BLOCK = 8 << 20  # CSV bytes per batch


def write_cells_parquet(csv_path: Path, out_dir: Path, *, job_id: str) -> Path:
    """Convert a cells CSV (written by `CellWriter`) to a hidden temporary parquet in
    `out_dir`; return its path (the caller renames it into place with the other files)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    types = {
        "id": pa.string(),
        "centroid_x_px": pa.float64(),
        "centroid_y_px": pa.float64(),
        "centroid_x_um": pa.float64(),
        "centroid_y_um": pa.float64(),
        "area_um2": pa.float64(),
        "perimeter_um": pa.float64(),
        "tile": pa.string(),
    }
    schema = pa.schema([("job_id", pa.dictionary(pa.int32(), pa.string())), *types.items()])
    tmp = out_dir / f".{CELLS_PARQUET}.partial"
    reader = pacsv.open_csv(
        csv_path,
        read_options=pacsv.ReadOptions(block_size=_BLOCK),
        convert_options=pacsv.ConvertOptions(column_types=types),
    )
    with pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
        for batch in reader:
            n = batch.num_rows
            job = pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, np.int32)), pa.array([job_id], pa.string())
            )
            cols = [job, *(batch.column(name) for name in types)]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))
    return tmp


def read_column(path: Path, name: str) -> np.ndarray:
    """One numeric column of a cells.parquet as a float array."""
    import pyarrow.parquet as pq

    column = pq.read_table(path, columns=[name]).column(name)
    return column.to_numpy().astype(float, copy=False)
