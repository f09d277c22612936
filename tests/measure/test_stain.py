"""Colour deconvolution against hand-computed OD on patches of known stain, and Macenko."""

from __future__ import annotations

import numpy as np
import pytest

from wsitui.jobs.measure_cells.stain import Stains, deconvolve, macenko, slide_stains
from wsitui.slides.style import EOSIN_OD, HEMATOXYLIN_OD, stain_rgb

LIGHT = 243.0
H = tuple(np.asarray(HEMATOXYLIN_OD) / np.linalg.norm(HEMATOXYLIN_OD))
E = tuple(np.asarray(EOSIN_OD) / np.linalg.norm(EOSIN_OD))


def patch(h: float, e: float, size: int = 16) -> np.ndarray:
    rgb = np.round(stain_rgb([(HEMATOXYLIN_OD, h), (EOSIN_OD, e)], light=LIGHT))
    return np.broadcast_to(rgb, (size, size, 3)).astype(np.uint8)


@pytest.mark.parametrize(("h", "e"), [(0.9, 0.1), (0.2, 0.6), (0.5, 0.5), (0.0, 0.3)])
def test_deconvolved_od_is_the_known_concentration(h: float, e: float) -> None:
    hema, eosin = deconvolve(patch(h, e), Stains(H, E, LIGHT, "param"))  # type: ignore[arg-type]
    # 8-bit rounding of the colour moves OD by at most ~log10(1 + 0.5/I) per channel.
    assert float(hema.mean()) == pytest.approx(h, abs=0.01)
    assert float(eosin.mean()) == pytest.approx(e, abs=0.01)


def test_deconvolution_by_hand_for_one_pixel() -> None:
    rgb = patch(0.7, 0.4, 1)
    od = -np.log10(rgb[0, 0].astype(float) / LIGHT)
    m = np.stack([H, E, np.cross(H, E) / np.linalg.norm(np.cross(H, E))])
    want = np.linalg.solve(m.T, od)  # od = c_h H + c_e E + c_r R
    hema, eosin = deconvolve(rgb, Stains(H, E, LIGHT, "param"))  # type: ignore[arg-type]
    assert float(hema[0, 0]) == pytest.approx(want[0], abs=1e-5)
    assert float(eosin[0, 0]) == pytest.approx(want[1], abs=1e-5)


def mixed_tissue(h_vec: tuple, e_vec: tuple, n: int = 4000, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.15, 1.2, (n, 2)) * (rng.random((n, 2)) < 0.8)
    c[c.sum(1) == 0, 0] = 0.5
    od = c[:, :1] * np.asarray(h_vec) / np.linalg.norm(h_vec) + c[:, 1:] * np.asarray(
        e_vec
    ) / np.linalg.norm(e_vec)
    od += rng.normal(0, 0.01, od.shape)
    rgb = np.clip(np.round(LIGHT * 10 ** (-od)), 0, 255).astype(np.uint8)
    glass = np.full((n // 4, 3), LIGHT, np.uint8)
    return np.concatenate([rgb, glass]).reshape(-1, 50, 3)


@pytest.mark.parametrize(
    ("h_vec", "e_vec"),
    [(HEMATOXYLIN_OD, EOSIN_OD), ((0.55, 0.75, 0.37), (0.15, 0.95, 0.28))],
)
def test_macenko_finds_the_stains_of_a_slide(h_vec: tuple, e_vec: tuple) -> None:
    found = macenko(mixed_tissue(h_vec, e_vec), LIGHT)
    assert found is not None
    h, e = found
    # Within ~8°: Macenko drops pixels faint in any channel, which biases it a little.
    assert float(h @ (np.asarray(h_vec) / np.linalg.norm(h_vec))) > 0.99
    assert float(e @ (np.asarray(e_vec) / np.linalg.norm(e_vec))) > 0.99


def test_a_slide_without_stained_tissue_falls_back_to_default_vectors_loudly() -> None:
    glass = np.full((64, 64, 3), 240, np.uint8)
    stains, warning = slide_stains(glass, glass, None, None)
    assert stains.source == "default" and warning is not None and "stain_vectors" in warning
    given, none = slide_stains(glass, glass, ((1, 1, 0), (0, 1, 1)), 250.0)
    assert given.source == "param" and none is None and given.background == 250.0
