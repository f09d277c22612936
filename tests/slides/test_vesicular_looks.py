"""Vesicular nuclei drawn as real ones look (thin chromatin rim, interior about as pale as the
cytoplasm, coarse chromatin clumps, 1-3 nucleoli), and that the new style fields, off by
default, leave every earlier look pixel for pixel as it was."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from wsitui.slides.style import DEFAULT_STYLE, STYLES, SampleStyle, tumour_style
from wsitui.slides.synthetic.generator import SamplePlan, rasterize_nuclei

# Two tiles of each named look (1024² slide, seed 3), from the code before these fields
# existed: sample slides and held-out sets made earlier stay valid.
EARLIER_LOOKS = {
    "default": "27d116c22325d996",
    "grainy": "6fc95e489a641c99",
    "soft": "e2d8e70da3b0176a",
    "dark": "6fd763d93f35179e",
    "clustered": "fb2cab9811a7abb1",
    "pale": "8237f9c3037c7707",
    "collagen": "ec7f07a07f7f6ee4",
    "ihc": "b0e46f9cb8b00345",
    "tumour": "5a8ef78a71b58d6b",
}
NEW_FIELDS = ("vesicular_tone", "membrane_px", "chromatin_clumps", "nucleoli", "cytoplasm_grain")


@pytest.mark.parametrize("name", list(EARLIER_LOOKS))
def test_earlier_looks_are_pixel_identical(name: str):
    style = STYLES[name]
    for field in NEW_FIELDS:
        assert getattr(style, field) == getattr(DEFAULT_STYLE, field)
    plan = SamplePlan(1024, 1024, 3, style)
    tiles = plan.render_tile(1, 1).tobytes() + plan.render_tile(2, 2).tobytes()
    assert hashlib.sha256(tiles).hexdigest()[:16] == EARLIER_LOOKS[name]


def test_bad_vesicular_fields_are_refused_in_one_line():
    with pytest.raises(ValueError) as e:
        replace(DEFAULT_STYLE, vesicular_tone=1.5, membrane_px=-1.0, nucleoli=4)
    msg = str(e.value)
    assert "vesicular_tone and chromatin_clumps must be 0-1" in msg
    assert "membrane_px must be 0-8 and nucleoli 1-3" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="cytoplasm_grain must be 0-1"):
        replace(DEFAULT_STYLE, cytoplasm_grain=2.0)


def test_most_tumour_looks_draw_real_vesicular_nuclei():
    looks = [tumour_style(np.random.default_rng([9, i]), f"t{i}") for i in range(40)]
    real = [s for s in looks if s.vesicular_tone > 0]
    assert 20 < len(real) < 40  # most, not all: the plain vesicular drawing stays in the mix
    assert all(s.membrane_px > 0 and s.chromatin_clumps > 0 for s in real)
    assert len({s.nucleoli for s in looks}) == 3
    assert sum(s.cytoplasm_grain > 0 for s in looks) > 10
    for s in looks:
        assert SampleStyle.from_json(s.to_json()) == s


def _big_nuclei(style: SampleStyle, seed: int) -> tuple[SamplePlan, np.ndarray, np.ndarray]:
    plan = SamplePlan(2048, 2048, seed, style)
    p, _, _ = plan.nuclei_in_cells(0, plan.cells_x, 0, plan.cells_y)
    big = p[p[:, 2] >= style.nucleus_big_px[0]]
    return plan, p, big


def _rings(big_row: np.ndarray, x0: int, y0: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    cx, cy, a, b, th = big_row
    yy, xx = np.mgrid[0:side, 0:side] + 0.5
    dx, dy = xx + x0 - cx, yy + y0 - cy
    c, s = np.cos(th), np.sin(th)
    r = np.hypot((dx * c + dy * s) / a, (dy * c - dx * s) / b)
    edge = (1 - r) * np.hypot(dx, dy) / np.maximum(r, 1e-6)  # px from the membrane
    return r, edge


def test_vesicular_nuclei_have_a_thin_rim_a_cytoplasm_toned_interior_and_clumps():
    style = STYLES["vesicular"]
    plan, p, big = _big_nuclei(style, 5)
    assert len(big) > 40
    rim_minus_inner, inner_vs_cyto, clumpy = [], [], []
    for row in big[::3][:20]:
        cx, cy, a, _, _ = row
        side = int(2 * a * style.cytoplasm_scale) + 8
        x0, y0 = int(cx) - side // 2, int(cy) - side // 2
        if x0 < 0 or y0 < 0 or x0 + side > 2048 or y0 + side > 2048:
            continue
        labels = rasterize_nuclei(p, x0, y0, side, side)
        mine = labels == labels[side // 2, side // 2]
        grey = plan.render_region(x0, y0, side, side).astype(float).mean(axis=2)
        r, edge = _rings(row, x0, y0, side)
        rim = mine & (edge < 1.0)
        inner = mine & (r < 0.6)
        cyto = (labels == 0) & (r > 1.15) & (r < style.cytoplasm_scale * 0.9)
        if rim.sum() < 10 or inner.sum() < 30 or cyto.sum() < 30:
            continue
        rim_minus_inner.append(grey[inner].mean() - grey[rim].mean())
        inner_vs_cyto.append(grey[inner].mean() - grey[cyto].mean())
        # Clumps: a share of the interior much darker than its median.
        vals = grey[inner]
        clumpy.append(np.mean(vals < np.median(vals) - 25))
    assert len(rim_minus_inner) >= 8
    # A crisp rim, darker than the interior.
    assert np.median(rim_minus_inner) > 15
    # The interior about as pale as the cytoplasm around it (within ~25 grey levels), not
    # glass-white as the plain vesicular drawing makes it.
    assert abs(np.median(inner_vs_cyto)) < 25
    # Coarse clumps cover part of the interior.
    assert 0.05 < np.median(clumpy) < 0.6


def test_vesicular_tiles_are_seamless():
    style = STYLES["vesicular"]
    plan, p, _ = _big_nuclei(style, 6)
    _, shade, _ = plan.nuclei_in_cells(0, plan.cells_x, 0, plan.cells_y)
    for tx, ty in ((1, 1), (3, 2)):
        np.testing.assert_array_equal(
            plan.render_tile(tx, ty), plan.render_tile(tx, ty, (p, shade))
        )
