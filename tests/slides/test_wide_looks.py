"""The generator's wide training looks (things that are not nuclei, IHC) and 40x samples."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

from wsitui.slides.patches import render_patch
from wsitui.slides.style import DEFAULT_STYLE, STYLES, SampleStyle, tumour_style, wide_style
from wsitui.slides.synthetic.generator import MPP, SamplePlan, magnification_zoom, rasterize_nuclei
from wsitui.slides.synthetic.truth import load_truth
from wsitui.slides.synthetic.writer import write_sample_slide


def test_wide_looks_are_valid_and_cover_what_a_model_must_ignore():
    styles = [wide_style(np.random.default_rng([7, i]), f"w{i}") for i in range(80)]
    for s in styles:
        assert SampleStyle.from_json(s.to_json()) == s
    assert sum(s.fibres_per_mm2 > 0 for s in styles) > 20
    assert sum(s.blobs_per_mm2 > 0 for s in styles) > 20
    assert sum(s.cytoplasm_scale > 0 for s in styles) > 15
    # IHC looks: no eosin (a grey-blue background), some with brown DAB.
    ihc = [s for s in styles if s.eosin_light[1] > s.eosin_light[0] - 8]
    assert len(ihc) > 5
    assert min(s.nucleus_major_px[0] for s in styles) < 3  # small nuclei
    assert max(s.nucleus_slots for s in styles) >= 24  # dense ones
    assert min(s.nucleus_gap_px / s.nucleus_major_px[0] for s in styles) < -0.3  # overlap


def test_fibres_and_blobs_are_drawn_but_never_labelled():
    base = replace(STYLES["collagen"], nucleus_density=0.0, cytoplasm_scale=0.0)
    bare = replace(base, fibres_per_mm2=0.0, blobs_per_mm2=0.0)
    rgb, labels = render_patch(base, (256, 256), seed=11)
    plain, _ = render_patch(bare, (256, 256), seed=11)
    assert labels.max() == 0  # collagen and red cells are not nuclei
    # Collagen is darker and pinker than the eosin it lies on.
    diff = plain.astype(int) - rgb.astype(int)
    changed = diff.sum(axis=2) > 30
    assert changed.mean() > 0.02
    assert diff[changed][:, 1].mean() > diff[changed][:, 0].mean()  # absorbs green: pink


def test_ihc_look_has_brown_cytoplasm_around_blue_nuclei():
    rgb, labels = render_patch(STYLES["ihc"], (256, 256), seed=3)
    nuc = rgb[labels > 0].astype(float).mean(axis=0)
    assert nuc[2] > nuc[0]  # haematoxylin: blue
    plan = SamplePlan(2048, 2048, 3, STYLES["ihc"])
    p, _, _ = plan.nuclei_in_cells(4, 8, 4, 8)
    grown = p.copy()
    grown[:, 2:4] *= STYLES["ihc"].cytoplasm_scale
    region = plan.render_region(512, 512, 512, 512).astype(float)
    ring = (rasterize_nuclei(grown, 512, 512, 512, 512) > 0) & (
        rasterize_nuclei(p, 512, 512, 512, 512) == 0
    )
    brown = region[ring].mean(axis=0)
    assert brown[0] > brown[1] > brown[2]  # DAB: brown (red > green > blue)


def test_the_default_look_draws_no_distractors():
    plan = SamplePlan(2048, 2048, 0, DEFAULT_STYLE)
    for kind in ("fibres", "blobs"):
        assert len(plan.distractors_in_box(kind, 0, 0, 2048, 2048)) == 0


def test_magnification_is_20x_or_40x_only():
    assert magnification_zoom(0.5) == 1 and magnification_zoom(0.25) == 2
    with pytest.raises(ValueError, match=r"mpp 0\.33 is not offered"):
        magnification_zoom(0.33)


def test_a_40x_sample_draws_the_same_tissue_at_twice_the_resolution(tmp_path: Path):
    style = STYLES["dark"]
    p20 = SamplePlan(2048, 2048, 5, style)
    p40 = SamplePlan(2048, 2048, 5, style, mpp=0.25)
    assert p40.mpp == pytest.approx(MPP / 2)
    n20, _, _ = p20.nuclei_in_cells(0, p20.cells_x, 0, p20.cells_y)
    n40, _, _ = p40.nuclei_in_cells(0, p40.cells_x, 0, p40.cells_y)
    # Nuclei in µm are alike: twice the pixels across, a quarter as many per px² of slide.
    assert np.median(n40[:, 2]) == pytest.approx(2 * np.median(n20[:, 2]), rel=0.15)
    assert len(n40) == pytest.approx(len(n20) / 4, rel=0.35)
    out = tmp_path / "s40.svs"
    info = write_sample_slide(out, size=(1024, 1024), seed=2, mpp=0.25)
    truth = load_truth(out)
    assert truth.mpp == pytest.approx(0.2495) and info.nuclei == len(truth.nuclei) > 0
    with tifffile.TiffFile(out) as tif:
        desc = tif.pages.first.description
    assert "MPP = 0.2495" in desc and "AppMag = 40" in desc
    # The drawn pixels hold the truth's nuclei: dark where the truth says.
    plan = SamplePlan(1024, 1024, 2, DEFAULT_STYLE, mpp=0.25)
    rgb = plan.render_region(0, 0, 1024, 1024).astype(float).mean(axis=2)
    lab = rasterize_nuclei(truth.nuclei, 0, 0, 1024, 1024)
    assert rgb[lab > 0].mean() < rgb[lab == 0].mean() - 40


def test_tumour_looks_draw_big_vesicular_nuclei_in_purple_cytoplasm():
    looks = [tumour_style(np.random.default_rng([9, i]), f"t{i}") for i in range(40)]
    for s in looks:
        assert SampleStyle.from_json(s.to_json()) == s
        assert s.nucleus_big_share > 0 and s.nucleus_big_px[0] >= 10  # >= 10 µm semi-axis px
    # Haematoxylin-tinged cytoplasm: purple (blue above green), not only pink.
    cyto = [s for s in looks if s.cytoplasm_scale > 0]
    assert len(cyto) > 25
    assert sum(s.cytoplasm_color[2] > s.cytoplasm_color[1] + 10 for s in cyto) > len(cyto) // 2
    assert sum(s.nucleus_vesicular > 0 for s in looks) > 20
    assert sum(s.nucleus_clustering > 0 for s in looks) > 10


def test_big_vesicular_nuclei_are_labelled_whole_and_pale_inside():
    style = STYLES["tumour"]
    plan = SamplePlan(2048, 2048, 5, style)
    p, _, _ = plan.nuclei_in_cells(0, plan.cells_x, 0, plan.cells_y)
    big = p[p[:, 2] >= style.nucleus_big_px[0]]
    assert len(big) > 30 and (p[:, 2] < style.nucleus_major_px[1] + 1e-9).sum() > 30
    # A big nucleus is labelled as one object, as big as drawn (> any default-look nucleus).
    cx, cy, a, b, th = big[len(big) // 2]
    x0, y0, side = int(cx - 40), int(cy - 40), 80
    labels = rasterize_nuclei(p, x0, y0, side, side)
    mine = labels == labels[40, 40]
    assert mine.sum() > np.pi * 9 * 9 and mine.sum() == pytest.approx(np.pi * a * b, rel=0.1)
    # Vesicular: the interior is paler than the chromatin at the membrane.
    grey = plan.render_region(x0, y0, side, side).astype(float).mean(axis=2)
    yy, xx = np.mgrid[0:side, 0:side] + 0.5
    dx, dy = xx + x0 - cx, yy + y0 - cy
    c, s = np.cos(th), np.sin(th)
    r = np.hypot((dx * c + dy * s) / a, (dy * c - dx * s) / b)
    assert grey[mine & (r < 0.5)].mean() > grey[mine & (r > 0.85)].mean() + 8


def test_tumour_tiles_are_seamless():
    # A tile drawn on its own (nuclei found from its neighbourhood) equals the writer's tile
    # (nuclei handed in): big nuclei and their cytoplasm reach across tile edges.
    plan = SamplePlan(2048, 2048, 6, STYLES["tumour"])
    p, shade, _ = plan.nuclei_in_cells(0, plan.cells_x, 0, plan.cells_y)
    for tx, ty in ((1, 1), (3, 2)):
        np.testing.assert_array_equal(
            plan.render_tile(tx, ty), plan.render_tile(tx, ty, (p, shade))
        )
