"""Outlines of every instance in a label image, in one vectorised pass.

Each outline follows pixel edges (no smoothing, no corner cutting), so filling it gives the
instance's pixels back exactly and its shoelace area is its pixel count; vertices sit on pixel
corners, (0, 0) being the top-left corner of the image, as QuPath reads coordinates. An
instance is outlined by its outer boundary (holes are filled: a nucleus has none worth
keeping). An instance in several 4-connected pieces keeps its largest piece. Every ring is
simple (where a boundary touches itself at a corner, the walk turns towards the instance and
the pinched-off loop becomes a ring of its own), so every polygon is valid.
"""

from __future__ import annotations

import numpy as np

_STEP = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)], np.int64)  # E, S, W, N (y down)
E, S, W, N = 0, 1, 2, 3


def _edges(lab: np.ndarray) -> tuple[np.ndarray, ...]:
    """Directed boundary edges with their instance on the right: (label, x0, y0, dir)."""
    h, w = lab.shape
    p = np.zeros((h + 2, w + 2), lab.dtype)
    p[1:-1, 1:-1] = lab
    parts = []
    above, below = p[:-1, 1:-1], p[1:, 1:-1]  # edge at y = i, x from j to j + 1
    i, j = np.nonzero(above != below)
    lb, la = below[i, j], above[i, j]
    k = lb != 0  # instance below: walk east, it is on the right
    parts.append((lb[k], j[k], i[k], np.full(k.sum(), E)))
    k = la != 0  # instance above: walk west from (j + 1, i)
    parts.append((la[k], j[k] + 1, i[k], np.full(k.sum(), W)))
    left, right = p[1:-1, :-1], p[1:-1, 1:]  # edge at x = j, y from i to i + 1
    i, j = np.nonzero(left != right)
    lr, ll = right[i, j], left[i, j]
    k = lr != 0  # instance right: walk north from (j, i + 1)
    parts.append((lr[k], j[k], i[k] + 1, np.full(k.sum(), N)))
    k = ll != 0  # instance left: walk south from (j, i)
    parts.append((ll[k], j[k], i[k], np.full(k.sum(), S)))
    return tuple(np.concatenate(c).astype(np.int64) for c in zip(*parts, strict=True))


def outlines(lab: np.ndarray) -> dict[int, np.ndarray]:
    """label -> outer ring (n, 2) of float64 x, y vertices (not closed: last != first)."""
    lab = np.asarray(lab)
    if lab.ndim != 2:
        raise ValueError(f"label image must be 2-D, got shape {lab.shape}")
    label, x0, y0, d = _edges(lab)
    if len(d) == 0:
        return {}
    h, w = lab.shape
    nv = (w + 1) * (h + 1)
    x1, y1 = x0 + _STEP[d, 0], y0 + _STEP[d, 1]
    key = (label * nv + y0 * (w + 1) + x0) * 4 + d
    order = np.argsort(key)
    skey = key[order]
    end = label * nv + y1 * (w + 1) + x1
    nxt = np.full(len(d), -1, np.int64)
    for turn in (1, 0, 3):  # right turn first: each 4-connected piece keeps its own ring
        want = end * 4 + (d + turn) % 4
        pos = np.clip(np.searchsorted(skey, want), 0, len(skey) - 1)
        hit = (skey[pos] == want) & (nxt < 0)
        nxt[hit] = order[pos[hit]]
    corner = d[nxt] != d  # the edge ends where the boundary turns: a vertex of the polygon
    nxt_l, corner_l = nxt.tolist(), corner.tolist()
    x1_l, y1_l, label_l = x1.tolist(), y1.tolist(), label.tolist()
    seen = bytearray(len(d))
    best: dict[int, tuple[float, list[tuple[int, int]]]] = {}

    def keep(lbl: int, pts: list[tuple[int, int]]) -> None:
        # Shoelace in plain Python: cheaper than numpy on rings of a few dozen vertices.
        area2 = 0
        px, py = pts[-1]
        for x, y in pts:
            area2 += px * y - x * py
            px, py = x, y
        # Outer rings run clockwise on screen (instance on the right, y down): positive area.
        if area2 > 0 and (lbl not in best or area2 > best[lbl][0]):
            best[lbl] = (float(area2), pts)

    for start in range(len(d)):
        if seen[start] or not corner_l[start]:
            continue
        lbl = label_l[start]
        pts: list[tuple[int, int]] = []
        at: dict[tuple[int, int], int] = {}
        e = start
        while not seen[e]:
            seen[e] = 1
            if corner_l[e]:
                v = (x1_l[e], y1_l[e])
                i = at.get(v)
                if i is not None:  # a pinch: the loop since the last visit is a ring
                    loop = pts[i:]
                    del pts[i:]
                    for u in loop:
                        del at[u]
                    keep(lbl, loop)
                at[v] = len(pts)
                pts.append(v)
            e = nxt_l[e]
        if len(pts) >= 4:
            keep(lbl, pts)
    return {lbl: np.asarray(pts, np.float64) for lbl, (_, pts) in best.items()}


def ring_measures(xy: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(areas, perimeters) of rings concatenated in `xy`, ring i = xy[starts[i]:starts[i+1]]."""
    if len(starts) < 2:
        return np.zeros(0), np.zeros(0)
    nxt = np.arange(1, len(xy) + 1)
    nxt[starts[1:] - 1] = starts[:-1]  # each ring's last vertex closes on its first
    x, y = xy[:, 0], xy[:, 1]
    cross = x * y[nxt] - x[nxt] * y
    seg = np.hypot(x[nxt] - x, y[nxt] - y)
    heads = starts[:-1]
    return 0.5 * np.add.reduceat(cross, heads), np.add.reduceat(seg, heads)


def ring_area(ring: np.ndarray) -> float:
    """Shoelace area of a ring (positive for the rings `outlines` returns)."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def ring_perimeter(ring: np.ndarray) -> float:
    return float(np.sum(np.hypot(*(np.roll(ring, -1, axis=0) - ring).T)))


def smooth_ring(ring: np.ndarray, iterations: int = 2) -> np.ndarray:
    """A pixel-edge ring with its staircase corners cut (Chaikin), scaled about its centroid
    back to the area it had, so the outline keeps covering the whole instance.

    Used when the slide is finer than the model (40x read at 0.5 µm/px): traced in model
    pixels and scaled up, a ring would come in steps of `scale` slide pixels.
    """
    if len(ring) < 4:
        return ring
    area0 = ring_area(ring)
    pts = ring
    for _ in range(iterations):
        nxt = np.roll(pts, -1, axis=0)
        q = 0.75 * pts + 0.25 * nxt
        r = 0.25 * pts + 0.75 * nxt
        pts = np.empty((2 * len(pts), 2), np.float64)
        pts[0::2], pts[1::2] = q, r
    area1 = ring_area(pts)
    if area1 <= 0 or area0 <= 0:
        return ring
    c = pts.mean(axis=0)
    return (pts - c) * np.sqrt(area0 / area1) + c
