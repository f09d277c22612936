"""Shape of each nucleus, from its polygon rasterised at the cells' pixel size.

A pixel belongs to a nucleus when its centre is inside the polygon (skimage.draw.polygon with
the half-pixel shift), and every value is skimage.measure.regionprops' on that mask, scaled to
µm: area, perimeter, eccentricity, solidity, major / minor axis length and orientation (degrees,
the angle between the image's row axis and the major axis, as regionprops gives it in radians).
Circularity is 4 pi area / perimeter^2 (1 for a disc, QuPath's definition), capped at 1 (the
pixel perimeter of a small disc underestimates its length).
"""

from __future__ import annotations

import math

import numpy as np
from skimage.draw import polygon as fill_polygon
from skimage.measure import regionprops

from wsitui.jobs.measure_cells.names import SHAPE


def rasterise(
    label: np.ndarray, ring: np.ndarray, value: int, x0: float, y0: float, scale: float
) -> None:
    """Paint `value` into `label` where pixel centres fall inside `ring` (level-0 x, y), the
    label image's pixel (0, 0) covering level-0 [x0, x0 + scale) x [y0, y0 + scale)."""
    cols = (ring[:, 0] - x0) / scale - 0.5
    rows = (ring[:, 1] - y0) / scale - 0.5
    rr, cc = fill_polygon(rows, cols, shape=label.shape)
    label[rr, cc] = value


def shape_rows(label: np.ndarray, values: np.ndarray, um_per_px: float) -> dict[int, list[float]]:
    """Shape measurements (in SHAPE's order, less the cell area) of the regions `values`."""
    wanted = {int(v) for v in values}
    out: dict[int, list[float]] = {}
    for region in regionprops(label):
        if region.label not in wanted:
            continue
        area = float(region.area)
        perimeter = float(region.perimeter)
        circ = min(1.0, 4 * math.pi * area / perimeter**2) if perimeter > 0 else 1.0
        out[region.label] = [
            area * um_per_px**2,
            perimeter * um_per_px,
            circ,
            float(region.solidity),
            float(region.eccentricity),
            float(region.axis_major_length) * um_per_px,
            float(region.axis_minor_length) * um_per_px,
            math.degrees(float(region.orientation)),
        ]
    return out


SHAPE_FROM_PROPS = len(SHAPE) - 1  # all but "Cell: Area µm^2", which needs the ring
