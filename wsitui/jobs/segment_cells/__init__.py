"""SEGMENT_CELLS, one folder: `executor.py` (the Executor), `params.py`, the plan (`plan.py`,
`memory.py`), the tile work (`source.py`, `extract.py`, `trace.py`, `domain.py`, `accel.py`,
`malloc.py`), where tiles run (`backends/`: `local`, `dask`, behind `backends/protocol.py`),
the seam merge (`merge.py`) and the outputs (`write.py`)."""
