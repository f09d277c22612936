"""Painting a tile's polygons into one label image, all at once.

The result is exactly `shape.rasterise` (skimage.draw.polygon: a pixel is painted when its
centre is inside the polygon, on an edge or at a vertex) applied to each polygon in turn, the
first polygon painted last (it wins where two overlap). Instead of a test per pixel per
polygon, every edge's crossing with every pixel row it spans is computed at once; on a row,
a pixel centre is inside when an odd number of crossings lie right of it, so the painted
columns are the runs between crossings 1-2, 3-4, ... (sorted). That is skimage's even-odd
test exactly wherever no crossing and no vertex is within EPS of a pixel centre's row or
column; a polygon that has one (a vertex level with a pixel centre, say) is painted by
skimage itself, so the result is the same in every case. SEGMENT_CELLS's outlines, on pixel
corners, never have one at the cells' own pixel size.
"""

from __future__ import annotations

import numpy as np
from skimage.draw import polygon as fill_polygon

EPS = 1e-7  # px: far above float rounding at slide coordinates (~1e-10), far below a pixel


def paint(label: np.ndarray, rings: list[np.ndarray], x0: float, y0: float, scale: float) -> None:
    """Paint ring k (level-0 x, y; closed or not) with value k + 1 into the zeroed `label`,
    the earlier rings winning where they overlap, as rasterise() painting them last to first."""
    h, w = label.shape
    n = len(rings)
    if n == 0:
        return
    sizes = np.array([len(r) for r in rings], np.int64)
    xy = np.concatenate(rings).astype(np.float64, copy=False)
    poly = np.repeat(np.arange(n, dtype=np.int64), sizes)
    # The same float operations as rasterise(): identical coordinates
    cols = (xy[:, 0] - x0) / scale - 0.5
    rows = (xy[:, 1] - y0) / scale - 0.5
    # Each vertex with its predecessor (the last vertex precedes the first, as skimage loops)
    first = np.cumsum(sizes) - sizes
    prev = np.arange(len(poly)) - 1
    prev[first] = first + sizes - 1
    xi, yi, xj, yj = cols, rows, cols[prev], rows[prev]
    unsure = ~(np.isfinite(cols) & np.isfinite(rows))
    unsure |= np.abs(rows - np.round(rows)) < EPS  # a vertex on a pixel row
    bad = np.zeros(n, bool)
    np.logical_or.at(bad, poly, unsure)
    bad |= sizes < 3
    # Rows each edge crosses: min(yi, yj) <= r < max(yi, yj)
    lo = np.ceil(np.minimum(yi, yj))
    hi = np.ceil(np.maximum(yi, yj)) - 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, h - 1)
    edge_ok = ~bad[poly] & (hi >= lo)
    e = np.flatnonzero(edge_ok)
    count = (hi[e] - lo[e] + 1).astype(np.int64)
    ee = np.repeat(e, count)
    r = np.repeat(lo[e], count) + (np.arange(ee.size) - np.repeat(np.cumsum(count) - count, count))
    x = xi[ee] + (r - yi[ee]) * (xj[ee] - xi[ee]) / (yj[ee] - yi[ee])
    near = np.abs(x - np.round(x)) < EPS  # a crossing at a pixel centre
    if near.any():
        bad[poly[ee[near]]] = True
        keep = ~bad[poly[ee]]
        ee, r, x = ee[keep], r[keep], x[keep]
    p = poly[ee]
    order = np.lexsort((x, r, p))
    p, r, x = p[order], r[order].astype(np.int64), x[order]
    # Crossings pair up per (polygon, row): 1-2, 3-4, ...
    start = np.r_[True, (p[1:] != p[:-1]) | (r[1:] != r[:-1])]
    rank = np.arange(p.size) - np.maximum.accumulate(np.where(start, np.arange(p.size), 0))
    left = np.flatnonzero(rank % 2 == 0)
    right = left + 1
    c0 = np.maximum(np.ceil(x[left]), 0).astype(np.int64)
    c1 = np.minimum(np.ceil(x[right]) - 1, w - 1).astype(np.int64)
    run = np.maximum(c1 - c0 + 1, 0)
    pix_row = np.repeat(r[left], run)
    pix_col = np.repeat(c0, run) + (np.arange(run.sum()) - np.repeat(np.cumsum(run) - run, run))
    pix = [pix_row * w + pix_col]
    val = [np.repeat(p[left] + 1, run)]
    for k in np.flatnonzero(bad).tolist():  # painted by skimage itself
        mask = _skimage_pixels(rings[k], h, w, x0, y0, scale)
        pix.append(mask)
        val.append(np.full(mask.size, k + 1, np.int64))
    flat = np.full(h * w, np.iinfo(np.int32).max, np.int32)
    np.minimum.at(flat, np.concatenate(pix), np.concatenate(val).astype(np.int32))
    flat[flat == np.iinfo(np.int32).max] = 0
    label[...] = flat.reshape(h, w)


def _skimage_pixels(
    ring: np.ndarray, h: int, w: int, x0: float, y0: float, scale: float
) -> np.ndarray:
    """Flat indices of the pixels rasterise() paints for `ring`."""
    cols = (ring[:, 0] - x0) / scale - 0.5
    rows = (ring[:, 1] - y0) / scale - 0.5
    rr, cc = fill_polygon(rows, cols, shape=(h, w))
    return rr.astype(np.int64) * w + cc
