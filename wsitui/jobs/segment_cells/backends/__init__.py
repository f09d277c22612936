"""Where SEGMENT_CELLS tiles run: this process (`local`) or a Dask cluster (`dask`)."""
