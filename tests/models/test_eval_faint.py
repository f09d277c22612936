"""`wsitui model eval`'s faint nuclei (true nuclei the image gives next to no evidence for) and
its dense looks: misses a detector could make apart from misses no detector can help."""

from __future__ import annotations

import numpy as np
import pytest

from wsitui.models import evaluate as ev
from wsitui.models.data import HELDOUT_SEED_BASE, HELDOUT_STREAM, TRAIN_STREAM
from wsitui.models.evaluate import (
    FAINT_OD,
    LookScore,
    evaluate_slides,
    faint_ids,
    heldout_slide,
    look_style,
    slide_seed,
    visible_recall,
)
from wsitui.models.heldout import DENSE_LOOKS, FRESH_DENSE
from wsitui.models.metrics import DetectionScore
from wsitui.slides.style import STYLES, dense_style

PINK = (236, 190, 220)  # eosin-stained tissue
NAVY = (110, 90, 170)  # a haematoxylin-stained nucleus


def _disc(shape: tuple[int, int], cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_a_nucleus_no_darker_than_its_tissue_is_faint_a_stained_one_is_not():
    rgb = np.empty((64, 96, 3), np.uint8)
    rgb[:] = PINK
    truth = np.zeros((64, 96), np.int32)
    seen = _disc(truth.shape, 32, 20, 6)
    unseen = _disc(truth.shape, 32, 60, 6)
    rgb[seen] = NAVY
    truth[seen], truth[unseen] = 1, 2  # the second is in the truth, not in the image
    assert faint_ids(rgb, truth).tolist() == [2]


def test_a_nucleus_a_shade_darker_is_faint_a_shade_more_is_not():
    # The same disc, darkened by steps: faint until it stands FAINT_OD over its ring.
    truth = np.zeros((48, 48), np.int32)
    disc = _disc(truth.shape, 24, 24, 7)
    truth[disc] = 1
    verdicts = []
    for step in range(0, 60, 4):
        rgb = np.empty((48, 48, 3), np.uint8)
        rgb[:] = PINK
        rgb[disc] = np.subtract(PINK, (step, step, step // 3))
        verdicts.append(faint_ids(rgb, truth).size == 1)
    assert verdicts[0] and not verdicts[-1], "neither all faint nor none"
    assert verdicts == sorted(verdicts, reverse=True), "darker never turns faint again"


def test_a_nucleus_with_no_tissue_around_it_is_not_faint():
    rgb = np.empty((32, 32, 3), np.uint8)
    rgb[:] = PINK
    truth = np.full((32, 32), 1, np.int32)  # packed: the whole image is nucleus 1 and 2
    truth[:, 16:] = 2
    assert faint_ids(rgb, truth).size == 0
    assert faint_ids(rgb, np.zeros((32, 32), np.int32)).size == 0
    glass = np.full((32, 32, 3), 245, np.uint8)  # a pale disc on glass: no tissue to stand over
    truth = np.zeros((32, 32), np.int32)
    truth[_disc(truth.shape, 16, 16, 5)] = 1
    assert faint_ids(glass, truth).size == 0


def test_the_ring_is_the_nearest_nucleus_s_whatever_the_labels():
    """An unstained nucleus inside a stained annulus (a nucleus wrapped round it): its ring is
    the pink between them, nearest to it, so it is faint. Before, the ring px went to the
    higher label within reach, the annulus's, and the inner nucleus had no ring: not faint."""
    rgb = np.empty((48, 48, 3), np.uint8)
    rgb[:] = PINK
    inner = _disc((48, 48), 24, 24, 3)
    annulus = _disc((48, 48), 24, 24, 10) & ~_disc((48, 48), 24, 24, 6)
    rgb[annulus] = NAVY
    truth = np.zeros((48, 48), np.int32)
    truth[inner], truth[annulus] = 1, 2
    assert faint_ids(rgb, truth).tolist() == [1]
    truth[inner], truth[annulus] = 2, 1  # the same with the labels swapped
    assert faint_ids(rgb, truth).tolist() == [2]


def test_visible_recall_counts_only_the_nuclei_that_are_not_faint():
    a = LookScore("a", (0,), DetectionScore(tp=90, fp=0, fn=10), 0, 0, 1.0, faint=8, faint_found=2)
    b = LookScore("b", (0,), DetectionScore(tp=50, fp=5, fn=0), 0, 0, 1.0)
    assert a.visible_recall == pytest.approx(88 / 92)
    assert b.visible_recall == 1.0
    assert visible_recall([a, b]) == pytest.approx(138 / 142)
    none = LookScore("c", (0,), DetectionScore(0, 0, 4), 0, 0, 1.0, faint=4)
    assert none.visible_recall == 1.0, "no visible nucleus: nothing was missed"
    assert a.as_dict()["visible_recall"] == round(88 / 92, 4) and a.as_dict()["faint"] == 8


def test_dense_looks_are_the_readme_four_and_never_a_training_look():
    assert look_style("dense2") == dense_style(np.random.default_rng([909, 2]), name="dense2")
    assert look_style("pale") == STYLES["pale"]
    assert FRESH_DENSE == ("dense0", "dense1", "dense2", "dense3")
    # README's four were measured at these seeds; each dense look and seed its own layout
    assert [slide_seed(f"dense{k}") for k in range(4)] == [2**30 + 10_500 + k for k in range(4)]
    seeds = {slide_seed(look, n) for look in DENSE_LOOKS for n in range(50)}
    assert len(seeds) == 1000 and not seeds & {slide_seed("pale", n) for n in range(50)}
    # never a training look or seed: its own style stream, seeds above every training seed
    assert ev.DENSE_STREAM not in (TRAIN_STREAM, HELDOUT_STREAM) and min(seeds) > HELDOUT_SEED_BASE
    slide = heldout_slide("dense1", size=(1024, 1024))
    assert slide.seed == slide_seed("dense1") and slide.rgb.shape == (1024, 1024, 3)
    with pytest.raises(ValueError, match="look 'dense20' is unknown; use some of: default"):
        look_style("dense20")


def test_evaluate_slides_reports_the_faint_nuclei_found(monkeypatch: pytest.MonkeyPatch):
    """A model that draws the truth finds every faint nucleus too; one that draws nothing finds
    none, and its recall on the visible rest is 0."""
    size = (1024, 1024)
    slide = heldout_slide("dense2", 0, size)
    faint = faint_ids(slide.rgb, slide.truth)
    assert faint.size > 0, "dense2 (ink strokes over nuclei) holds faint nuclei"

    class Nothing:
        def predict(self, batch: np.ndarray) -> np.ndarray:
            return np.zeros(batch.shape[:3], np.int32)

    [r] = evaluate_slides(Nothing(), ["dense2"], (0,), size)  # type: ignore[arg-type]
    assert (r.faint, r.faint_found, r.visible_recall) == (faint.size, 0, 0.0)
    monkeypatch.setattr(ev, "segment_as_job", lambda model, rgb: slide.truth)
    [r] = evaluate_slides(Nothing(), ["dense2"], (0,), size)  # type: ignore[arg-type]
    assert r.score.recall == 1.0 and r.faint_found == r.faint == faint.size
    assert r.visible_recall == 1.0
    assert FAINT_OD > 0
