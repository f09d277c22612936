"""Colour deconvolution into haematoxylin and eosin optical density (Ruifrok & Johnston 2001),
with the stain vectors estimated per slide by Macenko et al. 2009.

Optical density of a channel is OD = -log10(I / I0), I0 the light through glass. Each pixel's OD
is a sum of stain vectors times concentrations; with the third vector the cross product of the
two stains (QuPath's "residual"), the 3x3 matrix is inverted and a pixel's concentrations are
its OD times that inverse. A pixel of a pure mix of the two stains gives back its
concentrations exactly (up to the 8-bit rounding of the image).

Macenko: the OD of tissue pixels (OD of magnitude above `beta`: a per-channel threshold, as
in the paper, drops pale eosin, whose red OD is near 0, and biases both vectors) lies in the
plane of the two stains; project it on the plane of the two largest eigenvectors of its
covariance, and the robust extremes (percentiles `alpha`, 100 - `alpha`) of the angle in
that plane are the two stains. The one with the larger red OD is haematoxylin (blue-purple
absorbs red).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsitui.slides.style import EOSIN_OD, HEMATOXYLIN_OD

BETA = 0.15  # OD magnitude under this is glass or too faint to tell the stains apart
ALPHA = 1.0  # percentile of the angle taken as each extreme (robust to outliers)
MIN_PIXELS = 500  # fewer tissue pixels than this: the defaults (Ruifrok & Johnston) are used
# Two stain vectors closer than this (cosine) are one colour: a greyscale or single-stain scan.
# Their residual (cross product) would be ~0 and the matrix singular. The `stain_vectors`
# param is refused at the same bound (params.py).
MAX_STAIN_COSINE = 0.999


@dataclass(frozen=True, slots=True)
class Stains:
    hematoxylin: tuple[float, float, float]  # unit OD vectors (r, g, b)
    eosin: tuple[float, float, float]
    background: float  # I0: light through glass, 0-255
    source: str  # "macenko" | "param" | "default"

    def matrix_inverse(self) -> np.ndarray:
        """3x3 M^-1 (float32) with rows of M = hematoxylin, eosin, residual."""
        h = _unit(self.hematoxylin)
        e = _unit(self.eosin)
        r = np.cross(h, e)
        r = r / np.linalg.norm(r)
        return np.linalg.inv(np.stack([h, e, r])).astype(np.float32)


def _unit(v: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    a = np.asarray(v, np.float64)
    return a / np.linalg.norm(a)


def optical_density(rgb: np.ndarray, background: float) -> np.ndarray:
    """(..., 3) float32 OD of uint8 RGB; 0 (black) is read as 1 so OD stays finite."""
    i = np.maximum(rgb.astype(np.float32), 1.0)
    return -np.log10(i / np.float32(background))


def deconvolve(rgb: np.ndarray, stains: Stains) -> tuple[np.ndarray, np.ndarray]:
    """(haematoxylin, eosin) OD concentration images (float32) of an (h, w, 3) RGB image.

    8-bit channels make OD a 256-entry table, and each stain a sum of three table look-ups
    (the table times that channel's row of M^-1): no logarithm or matrix product per pixel."""
    lut = optical_density(np.arange(256, dtype=np.uint8), stains.background)
    inv = stains.matrix_inverse()
    px = np.asarray(rgb, np.uint8)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    out = []
    for k in (0, 1):
        tr, tg, tb = (lut * inv[ch, k] for ch in range(3))
        out.append(tr[r] + tg[g] + tb[b])
    return out[0], out[1]


def estimate_background(rgb: np.ndarray) -> float:
    """I0 from a low-resolution image: the brightness of its glass (99th percentile of the
    mean of the channels), at least 200 and at most 255 (a slide with no glass gets 255)."""
    grey = rgb.reshape(-1, 3).astype(np.float32).mean(axis=1)
    if grey.size == 0:
        return 255.0
    return float(np.clip(np.percentile(grey, 99), 200.0, 255.0))


def macenko(rgb: np.ndarray, background: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(haematoxylin, eosin) unit OD vectors of the tissue in `rgb`, or None if there are
    fewer than MIN_PIXELS tissue pixels."""
    od = optical_density(rgb.reshape(-1, 3), background).astype(np.float64)
    od = od[np.linalg.norm(od, axis=1) > BETA]
    if len(od) < MIN_PIXELS:
        return None
    _, vecs = np.linalg.eigh(np.cov(od.T))
    plane = vecs[:, [2, 1]]  # the two largest eigenvectors
    if plane[:, 0].sum() < 0:  # point the first into the positive OD octant
        plane[:, 0] *= -1
    if plane[:, 1].sum() < 0:
        plane[:, 1] *= -1
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [ALPHA, 100 - ALPHA])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    # Stains absorb: OD vectors are non-negative (noise can leave a component just below 0).
    v1 = np.clip(v1 if v1.sum() >= 0 else -v1, 0, None)
    v2 = np.clip(v2 if v2.sum() >= 0 else -v2, 0, None)
    if np.linalg.norm(v1) == 0 or np.linalg.norm(v2) == 0:
        return None
    h, e = (v1, v2) if v1[0] > v2[0] else (v2, v1)
    return _unit(h), _unit(e)


def slide_stains(
    thumb: np.ndarray,
    tissue: np.ndarray,
    vectors: tuple[tuple[float, float, float], tuple[float, float, float]] | None,
    background: float | None,
) -> tuple[Stains, str | None]:
    """The stains a job deconvolves with, and a warning when it fell back to the defaults.

    thumb: a low-resolution image of the whole slide (its glass gives the background);
    tissue: RGB pixels at the cells' pixel size around cells (nuclei are resolved there).
    """
    i0 = background if background is not None else estimate_background(thumb)
    if vectors is not None:
        h, e = (tuple(float(c) for c in _unit(v)) for v in vectors)
        return Stains(h, e, i0, "param"), None  # type: ignore[arg-type]
    found = macenko(tissue, i0)
    if found is not None and float(np.dot(found[0], found[1])) > MAX_STAIN_COSINE:
        h, e = (tuple(float(c) for c in _unit(v)) for v in (HEMATOXYLIN_OD, EOSIN_OD))
        why = (
            "the stained pixels show one colour only (a greyscale or single-stain scan?), so "
            "no two stains could be told apart; used Ruifrok & Johnston's H&E (set "
            "stain_vectors to choose)"
        )
        return Stains(h, e, i0, "default"), why  # type: ignore[arg-type]
    if found is None:
        h, e = (tuple(float(c) for c in _unit(v)) for v in (HEMATOXYLIN_OD, EOSIN_OD))
        why = (
            f"too little stained tissue (< {MIN_PIXELS} px) to estimate the stain vectors; "
            "used Ruifrok & Johnston's H&E (set stain_vectors to choose)"
        )
        return Stains(h, e, i0, "default"), why  # type: ignore[arg-type]
    h, e = (tuple(round(float(c), 6) for c in v) for v in found)
    return Stains(h, e, i0, "macenko"), None  # type: ignore[arg-type]
