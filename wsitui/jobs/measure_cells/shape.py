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
    """Shape measurements (in SHAPE's order, less the cell area) of the regions `values`.

    Area and the second moments (eccentricity, axes, orientation) come from one pass of
    bincounts over the image, by regionprops' own formulas (inertia tensor, its eigenvalues,
    `0.5 atan2(-2b, c - a)`); perimeter and solidity from regionprops itself (profiled: its
    per-region moments were a quarter of the job's time)."""
    ids = np.asarray(values, np.int64)
    if len(ids) == 0:
        return {}
    top = int(ids.max())
    rr, cc = np.nonzero((label > 0) & (label <= top))
    lab = label[rr, cc]
    n = np.bincount(lab, minlength=top + 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        r0 = np.bincount(lab, rr, top + 1) / n
        c0 = np.bincount(lab, cc, top + 1) / n
        dr, dc = rr - r0[lab], cc - c0[lab]
        a = np.bincount(lab, dc * dc, top + 1) / n  # inertia tensor [[a, b], [b, c]]
        c = np.bincount(lab, dr * dr, top + 1) / n
        b = -np.bincount(lab, dr * dc, top + 1) / n
    wanted = set(ids.tolist())
    out: dict[int, list[float]] = {}
    for region in regionprops(label):
        k = region.label
        if k not in wanted:
            continue
        area = float(n[k])
        perimeter = float(region.perimeter)
        circ = min(1.0, 4 * math.pi * area / perimeter**2) if perimeter > 0 else 1.0
        ak, bk, ck = float(a[k]), float(b[k]), float(c[k])
        half = math.sqrt(((ak - ck) / 2) ** 2 + bk**2)
        l1 = max(0.0, (ak + ck) / 2 + half)
        l2 = max(0.0, (ak + ck) / 2 - half)
        if abs(ak - ck) <= 1e-12 * max(ak + ck, 1e-300):
            orientation = math.pi / 4 if bk < 0 else -math.pi / 4
        else:
            orientation = 0.5 * math.atan2(-2 * bk, ck - ak)
        out[k] = [
            area * um_per_px**2,
            perimeter * um_per_px,
            circ,
            float(region.solidity),
            math.sqrt(1 - l2 / l1) if l1 > 0 else 0.0,
            4 * math.sqrt(l1) * um_per_px,
            4 * math.sqrt(l2) * um_per_px,
            math.degrees(orientation),
        ]
    return out


SHAPE_FROM_PROPS = len(SHAPE) - 1  # all but "Cell: Area µm^2", which needs the ring
