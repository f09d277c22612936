"""Detection F1 between predicted and true instance label images.

A predicted object matches a true one when their IoU is at least `iou` (0.5) or their
centroids lie within `centroid_px` (6 px); each object matches at most once, and the matching
maximises the number of matches (then the summed IoU) within each group of objects that could
match one another (Hungarian assignment per connected group, so it scales to whole tiles).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

IOU_MIN = 0.5
CENTROID_PX = 6.0


@dataclass(frozen=True, slots=True)
class DetectionScore:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 1.0

    def __add__(self, other: DetectionScore) -> DetectionScore:
        return DetectionScore(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def total(scores: Iterable[DetectionScore]) -> DetectionScore:
    """Pooled counts over many images (F1 of the pool, not a mean of F1s)."""
    out = DetectionScore(0, 0, 0)
    for s in scores:
        out = out + s
    return out


def _objects(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, areas, centroids (n, 2) as row, col) of the non-zero labels."""
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    if ids.size == 0:
        return ids, counts, np.zeros((0, 2))
    cents = np.asarray(ndimage.center_of_mass(np.ones_like(labels), labels, ids), dtype=float)
    return ids, counts, cents.reshape(-1, 2)


def detection_score(
    pred: np.ndarray,
    truth: np.ndarray,
    iou: float = IOU_MIN,
    centroid_px: float = CENTROID_PX,
) -> DetectionScore:
    """Match predicted objects to true ones (see the module docstring); 2-D label images."""
    return match_objects(pred, truth, iou, centroid_px)[0]


def match_objects(
    pred: np.ndarray,
    truth: np.ndarray,
    iou: float = IOU_MIN,
    centroid_px: float = CENTROID_PX,
) -> tuple[DetectionScore, np.ndarray]:
    """`detection_score` and the ids of the true objects that were matched."""
    none = np.zeros(0, np.int64)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise ValueError(f"label images must be 2-D and alike: {pred.shape} vs {truth.shape}")
    p_ids, p_area, p_cent = _objects(pred)
    t_ids, t_area, t_cent = _objects(truth)
    n_p, n_t = p_ids.size, t_ids.size
    if n_p == 0 or n_t == 0:
        return DetectionScore(0, n_p, n_t), none
    # Overlap areas of every overlapping (pred, true) pair.
    both = (pred > 0) & (truth > 0)
    pi = np.searchsorted(p_ids, pred[both])
    ti = np.searchsorted(t_ids, truth[both])
    inter = coo_matrix((np.ones(pi.size), (pi, ti)), shape=(n_p, n_t)).tocsr()
    inter.sum_duplicates()
    ov = inter.tocoo()
    iou_val = ov.data / (p_area[ov.row] + t_area[ov.col] - ov.data)
    weight: dict[tuple[int, int], float] = {}
    for r, c, v in zip(ov.row, ov.col, iou_val, strict=True):
        if v >= iou:
            weight[(int(r), int(c))] = float(v)
    iou_of = {(int(r), int(c)): float(v) for r, c, v in zip(ov.row, ov.col, iou_val, strict=True)}
    for r, near in enumerate(cKDTree(t_cent).query_ball_point(p_cent, centroid_px)):
        for c in near:
            weight.setdefault((r, int(c)), iou_of.get((r, int(c)), 0.0))
    if not weight:
        return DetectionScore(0, n_p, n_t), none
    rows = np.fromiter((k[0] for k in weight), dtype=np.int64, count=len(weight))
    cols = np.fromiter((k[1] for k in weight), dtype=np.int64, count=len(weight))
    vals = np.fromiter(weight.values(), dtype=float, count=len(weight))
    graph = coo_matrix((np.ones(rows.size), (rows, n_p + cols)), shape=(n_p + n_t, n_p + n_t))
    _, comp = connected_components(graph, directed=False)
    pair_comp = comp[rows]
    order = np.argsort(pair_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
    matched: list[int] = []
    for group in np.split(order, bounds):
        gr, gc, gv = rows[group], cols[group], vals[group]
        ur, ri = np.unique(gr, return_inverse=True)
        uc, ci = np.unique(gc, return_inverse=True)
        if ur.size == 1 or uc.size == 1:
            matched.append(int(gc[int(np.argmax(gv))]))
            continue
        cost = np.zeros((ur.size, uc.size))
        cost[ri, ci] = -(10.0 + gv)  # any match beats none; then prefer higher IoU
        a, b = linear_sum_assignment(cost)
        ok = cost[a, b] < 0
        matched.extend(int(c) for c in uc[b[ok]])
    tp = len(matched)
    return DetectionScore(tp, n_p - tp, n_t - tp), t_ids[np.asarray(matched, np.int64)]
