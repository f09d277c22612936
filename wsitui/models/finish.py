"""What the model layer does to an InstanSeg model's labels after the network, tile by tile: the
nuclear check (`nuclear_gate.py`), then the classical fill (`classical_fill.py`: the classical
fallback's `segment_tile` on the same pixels, and the nuclear evidence of what it adds).

All three read the tile's colour deconvolution (skimage `rgb2hed`, fixed stain vectors): it is
computed here once a tile (`classical.deconvolve`: the same values, about twice as fast) and
handed to each (until 2026-12-06 each computed its own, three a tile), with the same labels
out. Pure numpy/scipy/skimage; called by `TorchModel.predict`
(`wsitui/models/loaded.py`) on every path a job takes.
"""

from __future__ import annotations

import numpy as np

from wsitui.models import classical_fill, nuclear_gate
from wsitui.models.classical import deconvolve


def finish_tile(
    rgb: np.ndarray, labels: np.ndarray, *, check: bool, fill: bool
) -> tuple[np.ndarray, tuple[int, int] | None]:
    """(`labels` of one uint8 (H, W, 3) tile after the nuclear check when `check` and the
    classical fill when `fill`, the check's (detections, dropped) or None when not checked)."""
    counts = None
    if not (check or fill):
        return labels, counts
    # The check alone reads it only when there is a detection (a blank tile costs nothing).
    hed = deconvolve(rgb) if fill or labels.any() else None
    if check:
        labels, n, dropped = nuclear_gate.check(rgb, labels, hed)
        counts = (n, dropped)
    if fill:
        labels = classical_fill.fill(rgb, labels, hed)
    return labels, counts


def finish_batch(batch: np.ndarray, labels: np.ndarray, *, check: bool, fill: bool) -> np.ndarray:
    """`finish_tile` on each tile of uint8 (B, H, W, 3) / int (B, H, W) (int32 out when
    filled, `labels`' dtype otherwise); the check's counts go to any `nuclear_gate.tally`."""
    if not (check or fill):
        return labels
    out = np.empty(labels.shape, np.int32 if fill else labels.dtype)
    counts = []
    for i in range(len(batch)):
        out[i], c = finish_tile(batch[i], labels[i], check=check, fill=fill)
        if c is not None:
            counts.append(c)
    if check:
        nuclear_gate.count(counts)
    return out
