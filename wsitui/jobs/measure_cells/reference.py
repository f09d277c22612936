"""The straightforward measurement of one tile, kept as the reference the fast path must equal.

This is MEASURE_CELLS' first implementation, unchanged: shape from skimage.measure.regionprops
per region (its perimeter and its convex hull image for solidity), the ring from a Euclidean
distance transform with distances, stain statistics from one sort of the labelled pixels per
stain and compartment, over the whole region read. `measure.py` computes the same values
(equal up to float rounding) in a fraction of the time; the tests pin the two against each other
on tiles of a generated slide, and benchmarks/bench_measure.py times this one as its baseline.
The job never calls it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.measure import regionprops

from wsitui.jobs.measure_cells.measure import Scale, read_scaled
from wsitui.jobs.measure_cells.names import ALL, SHAPE
from wsitui.jobs.measure_cells.shape import rasterise
from wsitui.jobs.measure_cells.source import CellIndex, ring_of
from wsitui.jobs.measure_cells.stain import Stains, deconvolve
from wsitui.slides.reader import SlideReader


def ring_labels(label: np.ndarray, ring_px: float) -> np.ndarray:
    """Each background pixel within `ring_px` of a nucleus, labelled with its nearest one."""
    if ring_px <= 0 or not label.any():
        return np.zeros_like(label)
    background = label == 0
    dist, (iy, ix) = ndimage.distance_transform_edt(background, return_indices=True)
    return np.where(background & (dist <= ring_px), label[iy, ix], 0).astype(np.int32)


def intensity_stats(values: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(len(ids), 4) mean, std (population), min, max of `values` per label; NaN if empty."""
    out = np.full((len(ids), 4), np.nan)
    ids = np.asarray(ids, np.int64)
    if len(ids) == 0:
        return out
    inside = (labels > 0) & (labels <= ids.max())  # neighbours are not measured here
    lab = labels[inside].astype(np.int64)
    val = values[inside].astype(np.float64)
    if lab.size == 0:
        return out
    order = np.argsort(lab, kind="stable")
    lab, val = lab[order], val[order]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    present = lab[starts]
    counts = np.diff(np.r_[starts, lab.size])
    sums = np.add.reduceat(val, starts)
    mean = sums / counts
    sq = np.add.reduceat((val - np.repeat(mean, counts)) ** 2, starts)
    stats = np.stack(
        [
            mean,
            np.sqrt(sq / counts),
            np.minimum.reduceat(val, starts),
            np.maximum.reduceat(val, starts),
        ],
        axis=1,
    )
    pos = np.clip(np.searchsorted(present, ids), 0, len(present) - 1)
    found = present[pos] == ids
    out[found] = stats[pos[found]]
    return out


def shape_rows(label: np.ndarray, values: np.ndarray, um_per_px: float) -> dict[int, list[float]]:
    """Shape measurements (in SHAPE's order, less the cell area) of the regions `values`:
    area and second moments by bincounts (regionprops' formulas), perimeter and solidity from
    regionprops itself."""
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


def measure_tile(
    reader: SlideReader,
    index: CellIndex,
    own: np.ndarray,
    stains: Stains,
    sc: Scale,
) -> np.ndarray:
    """(len(own), 1 + len(ALL)) float64: the cell's index, then ALL's values (NaN: none)."""
    rows = np.full((len(own), 1 + len(ALL)), np.nan)
    rows[:, 0] = own
    if len(own) == 0:
        return rows
    s = sc.level0_per_px
    margin = (2 * sc.ring_px + 2) * s
    b = index.bbox[own]
    x0 = math.floor(max(0.0, b[:, 0].min() - margin))
    y0 = math.floor(max(0.0, b[:, 1].min() - margin))
    x1 = min(float(reader.dimensions[0]), b[:, 2].max() + margin)
    y1 = min(float(reader.dimensions[1]), b[:, 3].max() + margin)
    w = max(1, math.ceil((x1 - x0) / s))
    h = max(1, math.ceil((y1 - y0) / s))
    # Own cells first: labels 1..len(own); neighbours after them.
    near = index.within(x0, y0, x0 + w * s, y0 + h * s)
    others = np.setdiff1d(near, own, assume_unique=False)
    cells = np.concatenate([own, others])
    label = np.zeros((h, w), np.int32)
    feats = index.features(cells)
    # Neighbours painted first: where polygons overlap by rounding, the tile's own cell wins.
    for k in range(len(cells) - 1, -1, -1):
        rasterise(label, ring_of(feats[k]), k + 1, x0, y0, s)
    ring = ring_labels(label, sc.ring_px)
    ids = np.arange(1, len(own) + 1)
    shape = shape_rows(label, ids, sc.um_per_px)
    n_shape = len(SHAPE) - 1
    for k in range(len(own)):
        got = shape.get(k + 1)
        if got is not None:
            rows[k, 1 : 1 + n_shape] = got
    nucleus_px = np.bincount(label.ravel(), minlength=len(cells) + 1)[ids]
    ring_px = np.bincount(ring.ravel(), minlength=len(cells) + 1)[ids]
    rows[:, 1 + n_shape] = np.where(
        nucleus_px > 0, (nucleus_px + ring_px) * sc.um_per_px**2, np.nan
    )
    rgb = read_scaled(reader, x0, y0, w, h, s)
    hema, eosin = deconvolve(rgb, stains)
    col = 1 + len(SHAPE)
    for values in (hema, eosin):
        for compartment in (label, ring):
            rows[:, col : col + 4] = intensity_stats(values, compartment, ids)
            col += 4
    return rows
