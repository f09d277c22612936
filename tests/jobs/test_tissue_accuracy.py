"""The tissue mask on slides of other looks than the generator's default.

Grainy eosin, white lumens inside tissue (tissue in the truth, as a pathologist draws it), soft
edges fading into the glass, pale or strong stains. A plain global Otsu threshold scores a mean
IoU of 0.945 (worst 0.915) on these six; the mask must do better than 0.96 on average.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.slides.samples import iou
from wsitui.jobs.tissue_mask.mask import compute_tissue_mask
from wsitui.slides.reader import open_slide
from wsitui.slides.sample import SamplePlan, load_truth, write_sample_slide
from wsitui.slides.style import STYLES, SampleStyle, random_style

SIZE = (4096, 3072)


def looks() -> list[SampleStyle]:
    named = [STYLES[n] for n in ("grainy", "soft", "dark")]
    drawn = [random_style(np.random.default_rng(i), f"random{i}") for i in (1, 3, 4)]
    assert all(s.soft_edge_um > 0 for s in drawn)  # the hard cases: soft edges
    return named + drawn


@pytest.fixture(scope="module")
def scores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    out = {}
    root = tmp_path_factory.mktemp("looks")
    for style in looks():
        slide = root / f"{style.name}.svs"
        write_sample_slide(slide, size=SIZE, seed=0, style=style)
        with open_slide(slide) as r:
            mask = compute_tissue_mask(r).mask
        out[style.name] = iou(mask, load_truth(slide).tissue)
    return out


def test_the_mask_holds_up_on_other_looks(scores: dict[str, float]):
    assert min(scores.values()) >= 0.94, scores
    assert float(np.mean(list(scores.values()))) >= 0.96, scores


def test_lumens_inside_tissue_count_as_tissue(tmp_path: Path):
    slide = tmp_path / "lumens.svs"
    style = STYLES["grainy"]
    write_sample_slide(slide, size=SIZE, seed=2, style=style)
    plan = SamplePlan(*SIZE, seed=2, style=style)
    lx, ly, _ = plan.lumens_in_box(0, 0, *SIZE)
    assert len(lx) > 20  # the look has them
    truth = load_truth(slide)
    with open_slide(slide) as r:
        tm = compute_tissue_mask(r)
    ds = truth.tissue_downsample
    rows, cols = (ly // ds).astype(int), (lx // ds).astype(int)
    assert truth.tissue[rows, cols].all()  # lumens lie in tissue in the truth
    # The mask's own pixel size (finer than the truth's when small pieces were re-cut).
    mrows, mcols = (ly // tm.downsample[1]).astype(int), (lx // tm.downsample[0]).astype(int)
    assert tm.mask[mrows, mcols].mean() >= 0.95  # and the mask does not punch them out


def _mask_errors(tmp_path: Path, style: SampleStyle, seed: int) -> tuple[float, float, float]:
    """(IoU, missed, false) of a TISSUE_MASK on a sample slide of `style` and `seed` against its
    truth; missed and false tissue as shares of the true tissue's area."""
    slide = tmp_path / f"{style.name}_{seed}.svs"
    write_sample_slide(slide, size=SIZE, seed=seed, style=style)
    truth = load_truth(slide).tissue
    with open_slide(slide) as r:
        mask = compute_tissue_mask(r).mask
    if mask.shape != truth.shape:  # a finer mask, judged at the truth's px
        mask = np.asarray(Image.fromarray(mask).resize(truth.shape[::-1], Image.Resampling.NEAREST))
    missed = float((truth & ~mask).sum() / truth.sum())
    false = float((mask & ~truth).sum() / truth.sum())
    return iou(mask, truth), missed, false


def test_a_soft_edge_is_cut_at_the_stains_shade_there(tmp_path: Path):
    """`random6` (a tuning look): edges fading over 71 µm, the stain's shade varying from pale
    lavender to deep pink along them. Its tissue level averaged over 64 µm blocks was the
    deep pink beside a pale stretch, and the mask stopped short of the pale edges (IoU 0.936,
    5.8 % of the tissue missed); each stretch's own nearest tissue level: 0.957, 3.5 %; the
    edge placed on the fade's own ramp (2026-12-05): 0.972, 1.8 % (false 1.0 %)."""
    style = random_style(np.random.default_rng(6), "random6")
    assert style.soft_edge_um > 60
    score, missed, false = _mask_errors(tmp_path, style, seed=0)
    assert score >= 0.967, (score, missed, false)
    assert missed <= 0.022 and false <= 0.011, (missed, false)


@pytest.mark.parametrize(
    ("look", "seed", "floor", "most_missed", "most_false"),
    [("random3", 5, 0.958, 0.031, 0.011), ("random7", 5, 0.962, 0.025, 0.0125)],
)
def test_a_wide_fade_is_cut_half_way_along_its_own_ramp(
    tmp_path: Path, look: str, seed: int, floor: float, most_missed: float, most_false: float
):
    """Tuning looks whose edges fade over 101 and 121 µm. The edge half-way in grey between
    the glass and the nearest tissue's level moved with that level, and the stain's shade
    drifts between the fade and the tissue 50 µm in: `random3` seed 5 IoU 0.943 (missed
    4.0 %, false 1.8 %), `random7` 0.954 (3.2 %, 1.5 %). Cut W / 2 past where each stretch's
    fade leaves the glass, W the slide's (_ramp_edges), measured 2026-12-05: 0.963 (2.8 %,
    0.9 %) and 0.967 (2.2 %, 1.1 %): both errors fall."""
    style = random_style(np.random.default_rng(int(look.removeprefix("random"))), look)
    assert style.soft_edge_um > 100
    score, missed, false = _mask_errors(tmp_path, style, seed)
    assert score >= floor, (score, missed, false)
    assert missed <= most_missed and false <= most_false, (missed, false)
