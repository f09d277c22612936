"""Shape of each nucleus, from its polygon rasterised at the cells' pixel size.

A pixel belongs to a nucleus when its centre is inside the polygon (skimage.draw.polygon with
the half-pixel shift), and every value is skimage.measure.regionprops' on that mask, scaled to
µm: area, perimeter, eccentricity, solidity, major / minor axis length and orientation (degrees,
the angle between the image's row axis and the major axis, as regionprops gives it in radians).
Circularity is 4 pi area / perimeter^2 (1 for a disc, QuPath's definition), capped at 1 (the
pixel perimeter of a small disc underestimates its length).

All regions of a tile are measured at once from the list of their pixels, by regionprops' own
definitions (`reference.py` keeps the per-region regionprops computation they are tested
against; profiled, regionprops' convex hull image was most of the job's time):
- area and second moments: bincounts (its inertia tensor, eigenvalues, orientation formula);
- perimeter: its estimator (Benkrid & Crookes): a border pixel is one with a 4-neighbour outside
  the region; each border pixel's code, 1 + 2 x its border 4-neighbours + 10 x its border
  diagonal neighbours (of the same region), is weighted by the same table, the per-region
  histogram of codes dotted with it;
- solidity: area / the number of pixel centres in the closed convex hull of the pixels' edge
  midpoints (its `convex_hull_image` with `offset_coordinates`). In doubled coordinates every
  midpoint is on the integer lattice, so the hull is found and counted exactly in integers: per
  region, the left boundary of the hull is the greatest convex minorant of each half-row's
  leftmost midpoint (the right one of the rightmost), found by dropping every point on or
  outside the chord of its neighbours until none is; each pixel row then holds the integer
  columns between the two boundaries.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.draw import polygon as fill_polygon

from wsitui.jobs.measure_cells.names import SHAPE

SHAPE_FROM_PROPS = len(SHAPE) - 1  # all but "Cell: Area µm^2", which needs the ring

# skimage.measure.perimeter's weights per border-pixel code
PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2
_NEIGHBOURS = ((-1, 0, 2), (1, 0, 2), (0, -1, 2), (0, 1, 2))
_NEIGHBOURS += ((-1, -1, 10), (-1, 1, 10), (1, -1, 10), (1, 1, 10))


def rasterise(
    label: np.ndarray, ring: np.ndarray, value: int, x0: float, y0: float, scale: float
) -> None:
    """Paint `value` into `label` where pixel centres fall inside `ring` (level-0 x, y), the
    label image's pixel (0, 0) covering level-0 [x0, x0 + scale) x [y0, y0 + scale)."""
    cols = (ring[:, 0] - x0) / scale - 0.5
    rows = (ring[:, 1] - y0) / scale - 0.5
    rr, cc = fill_polygon(rows, cols, shape=label.shape)
    label[rr, cc] = value


def label_order(lab: np.ndarray, n: int) -> np.ndarray:
    """A stable argsort of labels 1..n (a radix sort when they fit 16 bits)."""
    return np.argsort(lab.astype(np.uint16) if n < 2**16 else lab, kind="stable")


def shape_rows(label: np.ndarray, n: int, um_per_px: float) -> np.ndarray:
    """(n, SHAPE_FROM_PROPS): SHAPE's measurements less the cell area, of the regions labelled
    1..n (larger labels are neighbours, not measured); a row of NaN for a label with no pixel."""
    out = np.full((n, SHAPE_FROM_PROPS), np.nan)
    if n == 0:
        return out
    rr, cc = np.nonzero((label > 0) & (label <= n))
    if rr.size == 0:
        return out
    lab = label[rr, cc].astype(np.int64)
    npx = np.bincount(lab, minlength=n + 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        r0 = np.bincount(lab, rr, n + 1) / npx
        c0 = np.bincount(lab, cc, n + 1) / npx
        dr, dc = rr - r0[lab], cc - c0[lab]
        a = np.bincount(lab, dc * dc, n + 1) / npx  # inertia tensor [[a, b], [b, c]]
        c = np.bincount(lab, dr * dr, n + 1) / npx
        b = -np.bincount(lab, dr * dc, n + 1) / npx
    perimeter = _perimeters(label, rr, cc, lab, n)
    order = label_order(lab, n)
    convex = _convex_areas(rr[order], cc[order], lab[order], n, label.shape[0])
    k = np.flatnonzero(npx[1:] > 0) + 1
    area, per, ak, bk, ck = npx[k], perimeter[k], a[k], b[k], c[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        circ = np.where(per > 0, np.minimum(1.0, 4 * math.pi * area / per**2), 1.0)
        half = np.sqrt(((ak - ck) / 2) ** 2 + bk**2)
        l1 = np.maximum(0.0, (ak + ck) / 2 + half)
        l2 = np.maximum(0.0, (ak + ck) / 2 - half)
        ecc = np.where(l1 > 0, np.sqrt(1 - l2 / l1), 0.0)
        level = np.abs(ak - ck) <= 1e-12 * np.maximum(ak + ck, 1e-300)
        orientation = np.where(
            level,
            np.where(bk < 0, math.pi / 4, -math.pi / 4),
            0.5 * np.arctan2(-2 * bk, ck - ak),
        )
    out[k - 1] = np.stack(
        [
            area * um_per_px**2,
            per * um_per_px,
            circ,
            area / convex[k],
            ecc,
            4 * np.sqrt(l1) * um_per_px,
            4 * np.sqrt(l2) * um_per_px,
            np.degrees(orientation),
        ],
        axis=1,
    )
    return out


def _perimeters(
    label: np.ndarray, rr: np.ndarray, cc: np.ndarray, lab: np.ndarray, n: int
) -> np.ndarray:
    """(n + 1,) skimage.measure.perimeter (4-neighbourhood) of each region's own mask."""
    pad = np.pad(label, 1)  # outside the image: no region
    pr, pc = rr + 1, cc + 1
    inner = pad[pr - 1, pc] == lab
    for dr, dc in ((1, 0), (0, -1), (0, 1)):
        inner &= pad[pr + dr, pc + dc] == lab
    border = ~inner
    br, bc, bl = pr[border], pc[border], lab[border]
    on_border = np.zeros(pad.shape, np.int32)  # a border pixel's label, 0 elsewhere
    on_border[br, bc] = bl
    code = np.ones(bl.size, np.int64)
    for dr, dc, weight in _NEIGHBOURS:
        code += weight * (on_border[br + dr, bc + dc] == bl)
    hist = np.bincount(bl * 50 + code, minlength=(n + 1) * 50).reshape(n + 1, 50)
    return hist @ PERIMETER_WEIGHTS


def _convex_areas(
    rr: np.ndarray, cc: np.ndarray, lab: np.ndarray, n: int, height: int
) -> np.ndarray:
    """(n + 1,) pixel count of each region's convex hull image (regionprops' `area_convex`).
    rr, cc, lab: the regions' pixels sorted by label, then row, then column."""
    lab = lab.astype(np.int64)
    row_start = np.flatnonzero(np.r_[True, (lab[1:] != lab[:-1]) | (rr[1:] != rr[:-1])])
    row_end = np.r_[row_start[1:], lab.size] - 1
    g, row = lab[row_start], rr[row_start].astype(np.int64)
    first, last = cc[row_start].astype(np.int64), cc[row_end].astype(np.int64)
    # Each row's extreme edge midpoints, doubled: (2r - 1, 2c), (2r, 2c -+ 1), (2r + 1, 2c).
    ys = (2 * row[:, None] + np.array([-1, 0, 1])).ravel()
    gs = np.repeat(g, 3)
    span = 2 * height + 4
    left = _lower_boundary(gs, ys, (2 * first[:, None] + np.array([0, -1, 0])).ravel(), span)
    right = _lower_boundary(gs, ys, (-2 * last[:, None] + np.array([0, -1, 0])).ravel(), span)
    # Every pixel row of each region, gaps included
    region_start = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    region_end = np.r_[region_start[1:], g.size] - 1
    top, bottom = row[region_start], row[region_end]
    heights = bottom - top + 1
    qg = np.repeat(g[region_start], heights)
    qr = (
        np.repeat(top, heights)
        + np.arange(qg.size)
        - np.repeat(np.cumsum(heights) - heights, heights)
    )
    # Columns c with left(2r) <= 2c <= right(2r): ceil(left / 2) .. floor(right / 2)
    num, den = _at(left, qg, 2 * qr, span)
    lo = -((-num) // (2 * den))
    num, den = _at(right, qg, 2 * qr, span)
    hi = (-num) // (2 * den)
    return np.bincount(qg, (hi - lo + 1).astype(np.float64), n + 1)


def _lower_boundary(
    g: np.ndarray, y: np.ndarray, x: np.ndarray, span: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per region g, the vertices (g, y, x) of the greatest convex minorant of x(y), from
    points sorted by (g, y) (equal y adjacent: the least x is kept)."""
    new = np.flatnonzero(np.r_[True, (g[1:] != g[:-1]) | (y[1:] != y[:-1])])
    x = np.minimum.reduceat(x, new)
    g, y = g[new], y[new]
    while g.size >= 3:
        same = (g[:-2] == g[1:-1]) & (g[1:-1] == g[2:])
        # x_i on or above the chord of its neighbours: not a vertex of the minorant
        above = (x[1:-1] - x[:-2]) * (y[2:] - y[:-2]) >= (x[2:] - x[:-2]) * (y[1:-1] - y[:-2])
        drop = same & above
        if not drop.any():
            break
        keep = np.r_[True, ~drop, True]
        g, y, x = g[keep], y[keep], x[keep]
    return g * span + (y + 1), y, x


def _at(
    chain: tuple[np.ndarray, np.ndarray, np.ndarray], g: np.ndarray, y: np.ndarray, span: int
) -> tuple[np.ndarray, np.ndarray]:
    """The boundary `chain` of region g at y (strictly inside its extent) as num / den, den > 0."""
    key, vy, vx = chain
    j = np.searchsorted(key, g * span + (y + 1), side="right") - 1
    y1, y2, x1, x2 = vy[j], vy[j + 1], vx[j], vx[j + 1]
    return x1 * (y2 - y1) + (y - y1) * (x2 - x1), y2 - y1
