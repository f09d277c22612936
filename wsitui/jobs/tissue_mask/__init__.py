"""TISSUE_MASK: where the tissue is, mapped onto a tile grid.

`mask` computes the mask (also used by SEGMENT_CELLS without a mask upstream), `params` holds
the job's params, `plan` the tile grid, `outputs` what the job writes, `executor` the job.
"""
