"""The tissue mask on needle-biopsy-like slides (issue 20): small fragments with nuclei, pale
and soft-edged pieces kept; dust, coloured specks and pen marks left out.

Slides from wsitui.slides.fragments at slide seed 3 (named looks and random_style looks 7-9;
random_style 3 and 6 at seed 5, tuning slides whose pieces fade out over 50 µm) and 11
(wide_style looks 100-111, wider than the random_style looks the mask was tuned on:
tuning used slide seed 0 in the named looks and random_style 0-9, and sample slides at seed
0). The wide looks here: a hard-edged one and the three soft-edged ones of 100-111 (wide106:
pale stain on darker glass, the worst measured), and three of 112-123 at slide seed 12:
wide115 (a fragment touching a pen stroke), wide120 (a pen stroke across the core's soft
edge) and wide122 (pale pieces, some dropped whole before the pale-piece rule).
Floors sit just under what was measured (README's tissue table), against each slide's truth
drawn every 1 µm (the mask is finer than the truth file's 8 µm when it re-cuts small pieces'
edges at 2 µm/px); the 8 µm mask scored under every IoU floor here.
"""

import numpy as np
import pytest
from scipy import ndimage

from wsitui.jobs.tissue_mask.mask import MaskSettings, compute_tissue_mask
from wsitui.slides import fragments
from wsitui.slides.fragments import (
    MPP,
    FragmentLayout,
    load_fragment_truth,
    mask_on_truth_grid,
    render_fragments,
    write_fragment_slide,
)
from wsitui.slides.reader import open_slide
from wsitui.slides.style import STYLES, random_style, wide_style

LOOKS = {
    "default": STYLES["default"],
    "dark": STYLES["dark"],
    "soft": STYLES["soft"],
    **{f"random{i}": random_style(np.random.default_rng(i), f"random{i}") for i in (3, 6, 7, 8, 9)},
    **{
        f"wide{i}": wide_style(np.random.default_rng(i), f"wide{i}")
        for i in (100, 103, 106, 110, 115, 120, 122)
    },
}
SEEDS = {name: 11 if name.startswith("wide") else 3 for name in LOOKS} | {
    "wide115": 12,  # a fragment touching a pen stroke
    "wide120": 12,  # ink across the core's soft edge
    "wide122": 12,  # pale pieces beside a dark core, fading over 50 µm
    # Tuning looks whose pieces fade out over 50 µm, at a slide seed where the fine cut at a
    # share of the tissue level missed both ways (_fine_ramp: cut on the fade's own ramp).
    "random3": 5,
    "random6": 5,
}
# (IoU floor, false tissue ceiling as a share of the true tissue), just past what was measured
# against the 1 µm truth (2026-12-04 23:33, the mask re-cut at 2 µm/px): IoU / false
# 0.996 / 0.001, 0.997 / 0.001, 0.966 / 0.017, 0.966 / 0.015, 0.995 / 0.002, 0.966 / 0.015;
# wide 0.994 / 0.000, 0.980 / 0.002, 0.949 / 0.009, 0.971 / 0.007, 0.989 / 0.003, 0.963 /
# 0.023, 0.968 / 0.008 (before the clear-glass level, ink-rim and pale-piece rules: wide120
# 0.956 / 0.030, wide122 0.947 / 0.008). The 8 µm mask (edge_mpp = 0) against the same truth:
# 0.954, 0.955, 0.944, 0.934, 0.956, 0.925; 0.960, 0.958, 0.921, 0.948, 0.943, 0.931, 0.945.
# 2026-12-05 (_fine_ramp, tissue5), against the 1 µm truth, IoU / false before -> after:
# random3 seed 5 0.961 / 0.023 -> 0.985 / 0.004, random6 seed 5 0.948 / 0.028 -> 0.979 /
# 0.010; wide103 0.981 / 0.002 -> 0.991 / 0.007 (missed 1.8 -> 0.3 %), wide106 0.951 / 0.009
# -> 0.972 / 0.002, wide110 0.970 / 0.009 -> 0.981 / 0.008, wide120 0.966 / 0.019 -> 0.973 /
# 0.016; the rest unchanged (hard edges; soft, random7, random9 at seed 3: the fade's width
# measured at 2 µm and at 8 µm disagree there, and the share cut stays).
FLOORS = {
    "default": (0.993, 0.004),
    "random3": (0.981, 0.007),
    "random6": (0.976, 0.013),
    "dark": (0.994, 0.004),
    "soft": (0.963, 0.022),
    "random7": (0.964, 0.020),
    "random8": (0.992, 0.005),
    "random9": (0.965, 0.019),
    "wide100": (0.991, 0.003),
    "wide103": (0.988, 0.009),
    "wide106": (0.969, 0.004),
    "wide110": (0.978, 0.011),
    "wide115": (0.987, 0.006),
    "wide120": (0.970, 0.018),
    "wide122": (0.965, 0.011),
}


def scores(share: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(IoU, false tissue as a share of the true tissue) of a mask's share on truth's grid."""
    t = truth.sum()
    false = float((share * ~truth).sum())
    return float((share * truth).sum() / (t + false)), false / t


TRUTH_DS = 2  # level-0 px per truth cell here (1 µm): the mask can be finer than 8 µm


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, ...]]:
    """Per look: (the mask's share of tissue at each 1 µm truth point, truth). The slides'
    truth is drawn every TRUTH_DS level-0 px instead of 16 (the same slide: the truth's
    spacing changes nothing drawn), as an outside judge with a fine truth sees a mask."""
    root = tmp_path_factory.mktemp("fragments")
    out = {}
    for name, style in LOOKS.items():
        slide = root / f"{name}.svs"
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fragments, "TRUTH_DS", TRUTH_DS)
            write_fragment_slide(slide, seed=SEEDS[name], style=style)
        truth, tds = load_fragment_truth(slide)
        assert tds == TRUTH_DS
        with open_slide(slide) as r:
            tm = compute_tissue_mask(r)
            coarse = compute_tissue_mask(r, MaskSettings(edge_mpp=0.0))
        out[name] = (
            mask_on_truth_grid(tm.mask, tm.downsample, truth.shape, tds),
            truth,
            mask_on_truth_grid(coarse.mask, coarse.downsample, truth.shape, tds),
            tm.downsample,
            coarse.downsample,
        )
    return out


@pytest.mark.parametrize("look", list(LOOKS))
def test_fragment_slides_iou_and_false_tissue(look: str, results):
    share, truth, *_ = results[look]
    iou, false = scores(share, truth)
    floor, ceiling = FLOORS[look]
    assert iou >= floor and false <= ceiling, (look, iou, false)


def test_small_fragments_with_nuclei_are_kept(results):
    # Pieces under the 10,000 µm² size threshold: most of each is in the mask.
    kept, small = 0, 0
    for mask, truth, *_ in results.values():
        lab, n = ndimage.label(truth)
        area_um2 = np.bincount(lab.ravel())[1:] * (TRUTH_DS * MPP) ** 2
        covered = ndimage.mean(mask >= 0.5, lab, np.arange(1, n + 1))
        is_small = area_um2 < 10_000
        small += int(is_small.sum())
        kept += int((covered[is_small] >= 0.5).sum())
    assert small >= 30 and kept >= 0.85 * small, (kept, small)


def test_dust_specks_and_ink_stay_out(results):
    # Everything drawn on the glass is at least 40 µm from tissue: mask pixels farther than
    # 24 µm from the truth are dust, debris or ink called tissue. Measured: at most 0.8 % of
    # the tissue's area (eosin-pink specks over 1,500 µm² pass the colour test; wide120, a pen
    # stroke across the core's soft edge, 0.3 %: its rim was 1.0 % before it was cut out with
    # the stroke); the size-only filter kept pen marks whole.
    for look, (mask, truth, *_) in results.items():
        far = ndimage.distance_transform_edt(~truth) * TRUTH_DS * MPP > 24
        assert (mask * far).sum() <= 0.01 * truth.sum(), look


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


def test_small_pieces_edges_are_cut_finer_than_the_8_um_mask(results):
    # The mask of a fragment slide is 4x finer per axis (2 µm/px, edge_mpp's default), its
    # pixel size recorded; with edge_mpp = 0 it is the 8 µm mask. Against the 1 µm truth the
    # finer one is better on every look here, and by more than a point on average.
    gains = []
    for look, (share, truth, coarse, ds, coarse_ds) in results.items():
        assert coarse_ds[0] == pytest.approx(4 * ds[0]) and coarse_ds[0] == pytest.approx(16)
        fine_iou, coarse_iou = scores(share, truth)[0], scores(coarse, truth)[0]
        assert fine_iou > coarse_iou, (look, fine_iou, coarse_iou)
        gains.append(fine_iou - coarse_iou)
    assert float(np.mean(gains)) >= 0.01, gains


def test_pale_pieces_beside_a_dark_core_are_kept_to_their_edges(tmp_path):
    # Only pale pieces (35-65 % stain) beside a well-stained core, in a held-out look with
    # pale eosin on darker glass and fading edges (wide122). The core sets the first split,
    # so the pale pieces fell in its glass class: the glass level beside them was taken
    # partly on them (their edges cut inside), and JPEG leaves their faint tint grey, so the
    # colour test dropped three of them whole. Measured (1 µm truth, core and 40 µm around it
    # left out): IoU 0.938, none dropped; before 0.899, three dropped.
    style = wide_style(np.random.default_rng(122), "wide122")
    layout = FragmentLayout(cores=1, fragments=40, pale_share=1.0, dust=0, specks=0, pen_marks=0)
    slide = tmp_path / "pale.svs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fragments, "TRUTH_DS", TRUTH_DS)
        write_fragment_slide(slide, seed=12, style=style, layout=layout)
    truth, tds = load_fragment_truth(slide)
    with open_slide(slide) as r:
        tm = compute_tissue_mask(r)
    share = mask_on_truth_grid(tm.mask, tm.downsample, truth.shape, tds)
    lab, n = ndimage.label(truth)
    core = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    pale, share = truth & ~core, share * ~ndimage.binary_dilation(core, iterations=40)
    lab, n = ndimage.label(pale)
    covered = ndimage.mean(share >= 0.5, lab, np.arange(1, n + 1))
    assert n >= 20 and covered.min() >= 0.5, covered
    iou, false = scores(share, pale)
    assert iou >= 0.93 and false <= 0.025, (iou, false)
