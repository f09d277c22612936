"""The classical fallback: hematoxylin colour deconvolution + distance-transform watershed.

Same interface as a loaded InstanSeg model (`LoadedModel`), no torch. Chosen when asked for
(`model = "classical"`) or when torch / instanseg-torch are missing; every manifest and face
names it. Sizes are in µm and converted at the model's pixel size (0.5 µm/px).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from skimage.color import rgb2hed
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

VERSION = "classical-1"
PIXEL_SIZE = 0.5
SMOOTH_PX = 1.0  # Gaussian sigma on the hematoxylin channel
MIN_H = 0.05  # hematoxylin OD a nucleus must exceed, whatever Otsu says (bare glass / eosin)
MIN_AREA_PX = 12
PEAK_MIN_DIST_PX = 4
PEAK_SMOOTH_PX = 1.0


def segment_tile(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> int32 (H, W) instance labels."""
    h = rgb2hed(rgb)[..., 0]
    h = ndimage.gaussian_filter(h, SMOOTH_PX)
    try:
        t = float(threshold_otsu(h))
    except ValueError:  # a flat tile
        t = MIN_H
    fg = h > max(t, MIN_H)
    fg = ndimage.binary_opening(fg, iterations=1)
    fg = ndimage.binary_fill_holes(fg)
    if not fg.any():
        return np.zeros(rgb.shape[:2], np.int32)
    dist = ndimage.gaussian_filter(ndimage.distance_transform_edt(fg), PEAK_SMOOTH_PX)
    comp, _ = ndimage.label(fg)
    peaks = peak_local_max(dist, min_distance=PEAK_MIN_DIST_PX, labels=comp, exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=fg)
    ids, counts = np.unique(labels, return_counts=True)
    small = ids[(counts < MIN_AREA_PX) & (ids > 0)]
    if small.size:
        labels[np.isin(labels, small)] = 0
    ids = np.unique(labels)
    remap = np.zeros(int(labels.max()) + 1, np.int32)
    remap[ids[ids > 0]] = np.arange(1, int(np.count_nonzero(ids)) + 1)
    return remap[labels]


class ClassicalModel:
    """`LoadedModel`'s interface over `segment_tile`."""

    name = "classical"
    source_kind = "classical"
    sha256 = VERSION
    version = VERSION
    pixel_size = PIXEL_SIZE
    channels = 3
    device = "cpu"
    precision = "fp64"
    is_classical = True

    def __init__(self, fallback_reason: str = "") -> None:
        self.fallback_reason = fallback_reason

    def predict(self, batch: np.ndarray, postprocess: dict[str, Any] | None = None) -> np.ndarray:
        if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
            raise ValueError(
                f"predict needs uint8 (B, H, W, 3) RGB, got {batch.dtype} {batch.shape}"
            )
        return np.stack([segment_tile(t) for t in batch]).astype(np.int32)

    def manifest(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": "classical",
            "method": "hematoxylin deconvolution (skimage rgb2hed) + distance-transform watershed",
            "sha256": self.sha256,
            "version": self.version,
            "pixel_size": self.pixel_size,
            "channels": self.channels,
            "device": self.device,
            "precision": self.precision,
            "fallback_reason": self.fallback_reason,
        }

    def close(self) -> None:
        return None
