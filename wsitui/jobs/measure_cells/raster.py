"""Painting a tile's polygons into one label image, all at once.

The result is exactly `shape.rasterise` (skimage.draw.polygon: a pixel is painted when its
centre is inside the polygon, on an edge or at a vertex) applied to each polygon in turn, the
first polygon painted last (it wins where two overlap). Instead of a test per pixel per
polygon, every edge's crossing with every pixel row it spans is computed at once; on a row,
a pixel centre is inside when an odd number of crossings lie right of it, so the painted
columns are the runs between crossings 1-2, 3-4, ... (sorted), counted both ways skimage
counts them (which differ on a row through a vertex). That is skimage's test exactly wherever
no crossing is within EPS of a pixel centre; a polygon with one (a vertex at a pixel centre,
an edge through one) is painted by skimage itself, so the result is the same in every case.
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
    bad = np.zeros(n, bool)
    np.logical_or.at(bad, poly, ~(np.isfinite(cols) & np.isfinite(rows)))
    bad |= sizes < 3
    # skimage counts an edge at row r in two ways: right of the point when (y_i > r) != (y_j > r)
    # (min <= r < max), left of it when (y_i < r) != (y_j < r) (min < r <= max); a pixel is
    # painted when either count is odd. The two differ only on a row holding a vertex exactly,
    # so the second is taken only for polygons with one.
    on_row = np.zeros(n, bool)
    np.logical_or.at(on_row, poly, rows == np.round(rows))
    ymin, ymax = np.minimum(yi, yj), np.maximum(yi, yj)
    kinds = (
        (np.ceil(ymin), np.ceil(ymax) - 1, ~bad[poly]),
        (np.floor(ymin) + 1, np.floor(ymax), ~bad[poly] & on_row[poly]),
    )
    found = []
    for lo, hi, use in kinds:
        lo, hi = np.maximum(lo, 0), np.minimum(hi, h - 1)
        e = np.flatnonzero(use & (hi >= lo))
        count = (hi[e] - lo[e] + 1).astype(np.int64)
        ee = np.repeat(e, count)
        start = np.repeat(np.cumsum(count) - count, count)
        r = np.repeat(lo[e], count) + (np.arange(ee.size) - start)
        x = xi[ee] + (r - yi[ee]) * (xj[ee] - xi[ee]) / (yj[ee] - yi[ee])
        bad[poly[ee[np.abs(x - np.round(x)) < EPS]]] = True  # a crossing at a pixel centre
        found.append((poly[ee], r, x))
    pix, val = [], []
    for kind, (p, r, x) in enumerate(found):
        keep = ~bad[p]
        p, r, x = p[keep], r[keep].astype(np.int64), x[keep]
        order = np.lexsort((x, r, p))
        p, r, x = p[order], r[order], x[order]
        # Crossings pair up per (polygon, row): 1-2, 3-4, ...; the odd counts lie between
        first_of = np.r_[True, (p[1:] != p[:-1]) | (r[1:] != r[:-1])]
        idx = np.arange(p.size)
        rank = idx - np.maximum.accumulate(np.where(first_of, idx, 0))
        a = np.flatnonzero(rank % 2 == 0)
        if kind == 0:  # right of c: a <= c < b
            c0, c1 = np.ceil(x[a]), np.ceil(x[a + 1]) - 1
        else:  # left of c: a < c <= b
            c0, c1 = np.floor(x[a]) + 1, np.floor(x[a + 1])
        c0 = np.maximum(c0, 0).astype(np.int64)
        c1 = np.minimum(c1, w - 1).astype(np.int64)
        run = np.maximum(c1 - c0 + 1, 0)
        offset = np.arange(run.sum()) - np.repeat(np.cumsum(run) - run, run)
        pix.append(np.repeat(r[a], run) * w + np.repeat(c0, run) + offset)
        val.append(np.repeat(p[a] + 1, run))
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
