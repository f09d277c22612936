"""Generator looks (SampleStyle) and training patches (render_patch)."""

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from wsitui.slides.patches import patch_origin, render_patch
from wsitui.slides.style import (
    DEFAULT_STYLE,
    STYLES,
    SampleStyle,
    random_style,
    stain_rgb,
    style_named,
)
from wsitui.slides.synthetic.generator import SamplePlan, rasterize_nuclei


def test_the_default_look_and_seeded_truth_are_unchanged():
    # Slides and truth files made before styles existed stay valid: same pixels, same nuclei.
    plan = SamplePlan(4096, 3072, seed=0)
    nuclei, _, _ = plan.nuclei_in_cells(0, plan.cells_x, 0, plan.cells_y)
    assert len(nuclei) == 1903
    assert hashlib.sha256(nuclei.tobytes()).hexdigest()[:16] == "3aaadb4f1656529a"
    assert hashlib.sha256(plan.render_tile(7, 6).tobytes()).hexdigest()[:16] == "c45f9a38ec25df66"


def test_random_styles_vary_widely_and_are_all_valid():
    styles = [random_style(np.random.default_rng(i)) for i in range(60)]
    eosin = np.array([s.eosin_light for s in styles])
    assert eosin.std(axis=0).min() > 4  # stain colours differ
    assert np.ptp([s.nucleus_density for s in styles]) > 0.4
    assert np.ptp([s.nucleus_major_px[1] for s in styles]) > 4
    assert np.ptp([s.jpeg_quality for s in styles]) > 20
    for feature in ("grain", "lumens_per_mm2", "soft_edge_um", "blur_px"):
        on = sum(getattr(s, feature) > 0 for s in styles)
        assert 10 < on < 50, feature  # each look feature is sometimes on, sometimes off
    assert any(s.nucleus_gap_px < 0 for s in styles)  # overlapping nuclei occur
    for s in styles:
        assert SampleStyle.from_json(s.to_json()) == s


def test_stain_vectors_give_he_colours():
    pink = stain_rgb([((0.072, 0.990, 0.105), 0.2)])
    purple = stain_rgb([((0.650, 0.704, 0.286), 0.8)])
    assert pink[1] < pink[0] and pink[1] < pink[2]  # eosin absorbs green
    assert purple[2] > purple[0] > purple[1]  # hematoxylin: blue-violet
    assert sum(purple) / 3 < 100 < min(pink)


def test_bad_styles_are_refused_in_one_line():
    with pytest.raises(ValueError) as e:
        replace(DEFAULT_STYLE, nucleus_major_px=(9.0, 4.0), jpeg_quality=0)
    msg = str(e.value)
    assert "nucleus_major_px must be" in msg and "jpeg_quality must be 1-100" in msg
    assert "\n" not in msg
    with pytest.raises(ValueError) as e:
        replace(DEFAULT_STYLE, nucleus_big_px=(20.0, 10.0), nucleus_vesicular=2.0)
    assert "nucleus_big_px must be" in str(e.value) and "nucleus_vesicular" in str(e.value)
    with pytest.raises(ValueError, match="style 'neon' is unknown; use one of: default, grainy"):
        style_named("neon")


@pytest.mark.parametrize("name", list(STYLES))
def test_patches_come_with_exact_instance_labels(name: str):
    style = STYLES[name]
    rgb, labels = render_patch(style, (256, 192), seed=3)
    assert rgb.shape == (192, 256, 3) and rgb.dtype == np.uint8
    assert labels.shape == (192, 256) and labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids[0] == 0 and list(ids) == list(range(len(ids))) and len(ids) > 3
    grey = rgb.astype(float).mean(axis=2)
    # Labels are on the nuclei; real vesicular nuclei (`vesicular_tone`) are nearly as pale
    # as their cytoplasm, so that look's margin is smaller.
    margin = 25 if style.vesicular_tone > 0 else 40
    assert grey[labels > 0].mean() < grey[labels == 0].mean() - margin
    again, again_labels = render_patch(style, (256, 192), seed=3)
    np.testing.assert_array_equal(again, rgb)
    np.testing.assert_array_equal(again_labels, labels)
    other, _ = render_patch(style, (256, 192), seed=4)
    assert np.abs(other.astype(int) - rgb).mean() > 5


def test_patches_share_the_slide_generators_drawing():
    # At the slide's own pixel size a patch is a region of a SamplePlan, nuclei included.
    style = STYLES["dark"]
    rgb, labels = render_patch(style, (128, 96), seed=9, mpp=0.499)
    plan, x0, y0, w, h = patch_origin(style, (128, 96), 9, 0.499)
    assert (w, h) == (128, 96) and isinstance(plan, SamplePlan) and plan.style == style
    nuclei, _, _ = plan.nuclei_in_cells(0, plan.cells_x, 0, plan.cells_y)
    want = rasterize_nuclei(nuclei, x0, y0, w, h)
    np.testing.assert_array_equal(labels > 0, want > 0)
    assert len(np.unique(labels)) == len(np.unique(want)) > 3
    drawn = plan.render_region(x0, y0, w, h).astype(int)
    assert np.abs(drawn - rgb).mean() < 4  # the same pixels, through JPEG at the style's quality


def test_patch_pixel_size_scales_the_nuclei():
    sizes = {}
    for mpp in (0.25, 0.5, 1.0):
        areas = []
        for seed in range(4):
            _, labels = render_patch(DEFAULT_STYLE, (256, 256), seed=seed, mpp=mpp)
            areas += list(np.bincount(labels.ravel())[1:])
        sizes[mpp] = float(np.median(areas))
    assert sizes[0.25] / sizes[0.5] == pytest.approx(4, rel=0.3)
    assert sizes[0.5] / sizes[1.0] == pytest.approx(4, rel=0.35)


def test_grainy_look_has_white_lumens_inside_tissue():
    style = STYLES["grainy"]
    plan = SamplePlan(4096, 3072, seed=2, style=style)
    lx, ly, lr = plan.lumens_in_box(0, 0, 4096, 3072)
    assert len(lx) > 20 and (plan.tissue_at_points(lx, ly) > 0).all()
    i = int(np.argmax(lr))
    x0, y0 = int(lx[i] - 8), int(ly[i] - 8)
    centre = plan.render_region(x0, y0, 16, 16).astype(float).mean()
    assert centre > 215  # white, like the glass
    # No nucleus is drawn inside a lumen.
    nuclei, _, _ = plan.nuclei_in_cells(0, plan.cells_x, 0, plan.cells_y)
    d = np.hypot(nuclei[:, None, 0] - lx[None], nuclei[:, None, 1] - ly[None])
    assert (d >= lr[None]).all()
