"""The tissue mask on needle-biopsy-like slides (issue 20): small fragments with nuclei, pale
and soft-edged pieces kept; dust, coloured specks and pen marks left out.

Slides from wsitui.slides.fragments at slide seed 3 (named looks and random_style looks 7-9)
and 11 (wide_style looks 100-111, wider than the random_style looks the mask was tuned on:
tuning used slide seed 0 in the named looks and random_style 0-9, and sample slides at seed
0). The wide looks here: a hard-edged one and the three soft-edged ones of 100-111 (wide106:
pale stain on darker glass, the worst of those), and two of 112-123 at slide seed 12: wide115
(a fragment touching a pen stroke) and wide120, the worst measured (a pen stroke across the
core's soft edge).
Floors sit just under what was measured (README's tissue table); the mask before
refine_edges scored under every IoU floor here (benchmarks/bench_tissue.py prints both).
"""

import numpy as np
import pytest
from scipy import ndimage

from wsitui.jobs.tissue_mask.mask import compute_tissue_mask
from wsitui.slides.fragments import (
    MPP,
    FragmentLayout,
    load_fragment_truth,
    render_fragments,
    write_fragment_slide,
)
from wsitui.slides.reader import open_slide
from wsitui.slides.style import STYLES, random_style, wide_style

LOOKS = {
    "default": STYLES["default"],
    "dark": STYLES["dark"],
    "soft": STYLES["soft"],
    **{f"random{i}": random_style(np.random.default_rng(i), f"random{i}") for i in (7, 8, 9)},
    **{
        f"wide{i}": wide_style(np.random.default_rng(i), f"wide{i}")
        for i in (100, 103, 106, 110, 115, 120)
    },
}
SEEDS = {name: 11 if name.startswith("wide") else 3 for name in LOOKS} | {
    "wide115": 12,  # a fragment touching a pen stroke
    "wide120": 12,  # the worst held-out look: ink across the core's soft edge
}
# (IoU floor, false tissue ceiling as a share of the true tissue), just past what was measured:
# IoU / false 0.978 / 0.006, 0.980 / 0.002, 0.954 / 0.030, 0.944 / 0.022, 0.976 / 0.012,
# 0.935 / 0.029; wide 0.979 / 0.009, 0.971 / 0.024, 0.930 / 0.019, 0.959 / 0.031, 0.960 /
# 0.011, 0.928 / 0.068. Before refine_edges and the ink steps: IoU 0.966, 0.967, 0.928,
# 0.936, 0.970, 0.929; 0.967, 0.962, 0.924, 0.949, 0.932, 0.895.
FLOORS = {
    "default": (0.975, 0.008),
    "dark": (0.977, 0.004),
    "soft": (0.95, 0.033),
    "random7": (0.94, 0.025),
    "random8": (0.973, 0.015),
    "random9": (0.932, 0.032),
    "wide100": (0.976, 0.011),
    "wide103": (0.968, 0.027),
    "wide106": (0.927, 0.022),
    "wide110": (0.955, 0.034),
    "wide115": (0.955, 0.013),
    "wide120": (0.924, 0.071),
}

# A pen stroke drawn across the core's soft edge: its dark middle is cut out of the core
# (_without_ink), its paler fringe stays (1.3 % of the tissue's area lies over 24 µm out;
# README's tissue quality section): a known gap, held by its floors above, not the dust check.
INK_ON_TISSUE = {"wide120"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, ...]]:
    root = tmp_path_factory.mktemp("fragments")
    out = {}
    for name, style in LOOKS.items():
        slide = root / f"{name}.svs"
        write_fragment_slide(slide, seed=SEEDS[name], style=style)
        with open_slide(slide) as r:
            mask = compute_tissue_mask(r).mask
        out[name] = (mask, load_fragment_truth(slide)[0])
    return out


@pytest.mark.parametrize("look", list(LOOKS))
def test_fragment_slides_iou_and_false_tissue(look: str, results):
    mask, truth = results[look]
    iou = (mask & truth).sum() / (mask | truth).sum()
    false = (mask & ~truth).sum() / truth.sum()
    floor, ceiling = FLOORS[look]
    assert iou >= floor and false <= ceiling, (look, iou, false)


def test_small_fragments_with_nuclei_are_kept(results):
    # Pieces under the 10,000 µm² size threshold: most of each is in the mask.
    kept, small = 0, 0
    for mask, truth in results.values():
        lab, n = ndimage.label(truth)
        area_um2 = np.bincount(lab.ravel())[1:] * (16 * MPP) ** 2
        covered = ndimage.mean(mask, lab, np.arange(1, n + 1))
        is_small = area_um2 < 10_000
        small += int(is_small.sum())
        kept += int((covered[is_small] >= 0.5).sum())
    assert small >= 30 and kept >= 0.85 * small, (kept, small)


def test_dust_specks_and_ink_stay_out(results):
    # Everything drawn on the glass is at least 40 µm from tissue: mask pixels farther than
    # 24 µm from the truth are dust, debris or ink called tissue. Measured: at most 0.8 % of
    # the tissue's area (eosin-pink specks over 1,500 µm² pass the colour test); the size-only
    # filter kept pen marks whole.
    for look, (mask, truth) in results.items():
        if look in INK_ON_TISSUE:
            continue
        far = ndimage.distance_transform_edt(~truth) * 16 * MPP > 24
        assert (mask & far).sum() <= 0.01 * truth.sum(), look


def test_a_fragment_slide_is_a_pyramidal_svs_with_its_truth(tmp_path):
    slide = tmp_path / "f.svs"
    drawn = write_fragment_slide(slide, size=(2048, 1536), seed=1, style=STYLES["soft"])
    with open_slide(slide) as r:
        assert r.dimensions == (2048, 1536) and r.level_count == 2
        assert abs(r.mpp - MPP) < 1e-3
    truth, ds = load_fragment_truth(slide)
    assert ds == 16 and truth.shape == (96, 128) and truth.any()
    np.testing.assert_array_equal(truth, drawn.tissue)
    # A pure function of (size, seed, style): the same pixels again; junk is never tissue.
    again = render_fragments((2048, 1536), 1, STYLES["soft"])
    np.testing.assert_array_equal(again.rgb, drawn.rgb)
    bare = render_fragments(
        (2048, 1536), 1, STYLES["soft"], FragmentLayout(dust=0, specks=0, pen_marks=0)
    )
    np.testing.assert_array_equal(bare.tissue, drawn.tissue)
