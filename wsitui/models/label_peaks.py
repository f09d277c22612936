"""`skimage.feature.peak_local_max(image, min_distance, labels=labels, exclude_border=False)`,
the same peaks in the same order, without its loop over labels.

skimage finds each label's peaks on its own (the label's bounding box, every other pixel set to
the dtype's minimum, a maximum filter, the high peaks sorted and thinned to `min_distance` with
a KD-tree): on a tile of packed nuclei that is hundreds of calls, and it was about 30 % of the
classical fallback's CPU time per tile (24 dense 512² tiles: 0.93 of ~3.2 s, 2026-12-05). Here the
labels are split into groups whose members lie more than `min_distance` apart, so one masked
maximum filter per group sees each label alone, and the thinning runs once over all labels'
candidates. `tests/models/test_label_peaks.py` holds it equal to skimage's.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree


def _groups(boxes: list[tuple[slice, ...] | None], reach: int) -> np.ndarray:
    """Group number per label (index 0 = label 1; -1 for a missing label): labels whose
    bounding boxes, grown by `reach`, overlap are never in one group."""
    n = len(boxes)
    lo = np.full((n, 2), -(10**9), np.int64)
    hi = np.full((n, 2), -(10**9), np.int64)
    present = np.zeros(n, bool)
    for i, box in enumerate(boxes):
        if box is None:
            continue
        present[i] = True
        lo[i] = (box[0].start - reach, box[1].start - reach)
        hi[i] = (box[0].stop + reach, box[1].stop + reach)
    group = np.full(n, -1, np.int64)
    idx = np.flatnonzero(present)
    if not idx.size:
        return group
    a_lo, a_hi = lo[idx], hi[idx]
    # Grown boxes overlap when they overlap on both axes (half-open intervals).
    clash = (
        (a_lo[:, None, 0] < a_hi[None, :, 0])
        & (a_lo[None, :, 0] < a_hi[:, None, 0])
        & (a_lo[:, None, 1] < a_hi[None, :, 1])
        & (a_lo[None, :, 1] < a_hi[:, None, 1])
    )
    np.fill_diagonal(clash, False)
    local = np.full(idx.size, -1, np.int64)
    for k in range(idx.size):  # greedy colouring, in label order
        taken = local[clash[k] & (local >= 0)]
        free = np.ones(taken.size + 1, bool)
        free[taken[taken <= taken.size]] = False
        local[k] = int(np.argmax(free))
    group[idx] = local
    return group


def label_peaks(image: np.ndarray, labels: np.ndarray, min_distance: int) -> np.ndarray:
    """(n, 2) int row/col peaks of a 2-D float `image` within each label of `labels` (int,
    0 = background), as skimage's `peak_local_max(image, min_distance=min_distance,
    labels=labels, exclude_border=False)` returns them: label by label, each label's peaks
    brightest first (ties in raster order), none closer than `min_distance` (Chebyshev) to a
    brighter kept one of its label, only above the image's minimum."""
    labels = np.asarray(labels)
    if image.ndim != 2 or labels.shape != image.shape:
        raise ValueError(f"label_peaks needs a 2-D image and labels alike, got {image.shape}")
    boxes = ndimage.find_objects(labels)
    if not boxes:
        return np.empty((0, 2), np.int64)
    floating = np.issubdtype(image.dtype, np.floating)
    floor = np.finfo(image.dtype).min if floating else np.iinfo(image.dtype).min
    threshold = image.min()
    size = 2 * min_distance + 1
    group = _groups(boxes, min_distance)
    group_of = np.concatenate([[-1], group])[labels]
    peak = np.zeros(image.shape, bool)
    for g in range(int(group.max()) + 1):
        mine = group_of == g
        masked = np.where(mine, image, floor)
        peak |= mine & (masked == ndimage.maximum_filter(masked, size=size, mode="nearest"))
    n = len(boxes)
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1)
    hits = np.bincount(flat, weights=peak.ravel(), minlength=n + 1)
    trivial = (area > 0) & (hits == area)
    trivial[0] = False
    for i in np.flatnonzero(trivial):
        # As skimage: a label whose every pixel is its local maximum (flat) has no peak but the
        # pixels an opening of it removes (its bounding box, the label alone).
        box = boxes[i - 1]
        own = labels[box] == i
        region = peak[box]
        region[own] = (own & ~ndimage.binary_opening(own))[own]
    peak &= image > threshold  # (only labelled px were ever set)
    rows, cols = np.nonzero(peak)
    if not rows.size:
        return np.empty((0, 2), np.int64)
    lab = labels[rows, cols]
    order = np.lexsort((-image[rows, cols], lab))  # by label, then brightest, then raster
    rows, cols, lab = rows[order], cols[order], lab[order]
    coords = np.stack([rows, cols], axis=1).astype(np.int64)
    if min_distance <= 1:
        return coords
    keep = np.ones(len(coords), bool)
    pairs = cKDTree(coords).query_pairs(min_distance - 1, p=np.inf, output_type="ndarray")
    if len(pairs):
        pairs = pairs[lab[pairs[:, 0]] == lab[pairs[:, 1]]]
    if len(pairs):
        pairs = np.sort(pairs, axis=1)  # (earlier, later) in the sorted order
        later: dict[int, list[int]] = {}
        for a, b in pairs.tolist():
            later.setdefault(a, []).append(b)
        for a in sorted(later):
            if keep[a]:
                keep[later[a]] = False
    return coords[keep]
