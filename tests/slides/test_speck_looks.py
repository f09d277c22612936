"""Pale purple specks and nucleus-sized pale blobs that are not nuclei (`with_specks`): off by
default (every earlier look pixel for pixel as it was), drawn where asked, paler than the look's
palest nuclei, and never in the truth labels."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

# EARLIER_LOOKS: two tiles of each named look (1024² slide, seed 3), pinned from before the
# vesicular fields: unchanged by the speck fields too.
from tests.slides.test_vesicular_looks import EARLIER_LOOKS
from wsitui.slides.style import DEFAULT_STYLE, STYLES, tumour_style, wide_style, with_specks
from wsitui.slides.synthetic.generator import SamplePlan, rasterize_nuclei

SPECK_FIELDS = ("specks_per_mm2", "speck_color", "speck_radius_um", "speck_alpha")


@pytest.mark.parametrize("name", ["default", "tumour", "collagen"])
def test_speck_fields_are_off_in_earlier_looks_and_change_no_pixel(name: str):
    style = STYLES[name]
    for field in SPECK_FIELDS:
        assert getattr(style, field) == getattr(DEFAULT_STYLE, field)
    plan = SamplePlan(1024, 1024, 3, style)
    tiles = plan.render_tile(1, 1).tobytes() + plan.render_tile(2, 2).tobytes()
    assert hashlib.sha256(tiles).hexdigest()[:16] == EARLIER_LOOKS[name]


def test_bad_speck_fields_are_refused_in_one_line():
    with pytest.raises(ValueError) as e:
        replace(DEFAULT_STYLE, specks_per_mm2=-1.0, speck_alpha=2.0)
    msg = str(e.value)
    assert "specks_per_mm2 must be 0-5000" in msg and "speck_alpha must be 0-1" in msg
    assert "\n" not in msg


def test_specks_are_drawn_paler_than_nuclei_and_stay_out_of_the_truth():
    base = replace(tumour_style(np.random.default_rng([4, 1])), nucleus_density=0.3)
    seen = 0
    for k in range(8):
        style = with_specks(base, np.random.default_rng([5, k]))
        assert style.specks_per_mm2 > 0
        plain = SamplePlan(1024, 1024, 11, replace(style, specks_per_mm2=0.0))
        speckled = SamplePlan(1024, 1024, 11, style)
        p, _, _ = plain.nuclei_in_cells(0, plain.cells_x, 0, plain.cells_y)
        q, _, _ = speckled.nuclei_in_cells(0, speckled.cells_x, 0, speckled.cells_y)
        np.testing.assert_array_equal(p, q)  # the same nuclei: specks are not in the truth
        a = plain.render_region(256, 256, 512, 512).astype(float).sum(axis=2)
        b = speckled.render_region(256, 256, 512, 512).astype(float).sum(axis=2)
        labels = rasterize_nuclei(p, 256, 256, 512, 512)
        changed = (a - b > 20) & (labels == 0)
        seen += int(changed.sum() > 30)
        # Darker where drawn, but lighter than the look's palest nucleus colour.
        if changed.any():
            assert np.median(b[changed]) > sum(style.nucleus_light) - 60
    assert seen >= 6


def test_with_specks_draws_small_specks_and_pale_blobs():
    looks = [
        with_specks(wide_style(np.random.default_rng(i)), np.random.default_rng(i))
        for i in range(40)
    ]
    small = [s for s in looks if s.speck_radius_um[1] <= 2.2]
    blobs = [s for s in looks if s.speck_radius_um[0] >= 2.0]
    assert len(small) > 12 and len(blobs) > 8 and len(small) + len(blobs) == 40


def test_dark_nest_looks_pack_dark_nuclei_in_dark_purple_cytoplasm():
    from wsitui.slides.style import dark_nest_style

    looks = [dark_nest_style(np.random.default_rng([6, i])) for i in range(20)]
    for s in looks:
        tissue, nucleus = sum(s.eosin_light), sum(s.nucleus_light)
        assert tissue < 560  # purple, well below pale pink eosin (~620 in the default look)
        assert 0 < tissue - nucleus < 150  # nuclei darker, but by less than usual
        assert s.nucleus_big_share >= 0.4 and s.cytoplasm_scale == 0
