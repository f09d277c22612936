"""Detection F1: IoU >= 0.5 or centroids within 6 px, one-to-one."""

from __future__ import annotations

import numpy as np
import pytest

from wsitui.models.metrics import DetectionScore, detection_score, total


def disk(shape: tuple[int, int], centres: list[tuple[int, int, int]]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.int32)
    for i, (cy, cx, r) in enumerate(centres, start=1):
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    return out


def test_identical_labels_score_one_whatever_the_ids():
    truth = disk((64, 64), [(10, 10, 4), (30, 40, 5), (50, 15, 3)])
    pred = np.where(truth > 0, 10 - truth, 0)  # other ids, same objects
    assert detection_score(pred, truth) == DetectionScore(3, 0, 0)


def test_centroid_within_6_px_matches_even_with_low_iou():
    truth = disk((64, 64), [(30, 30, 3)])
    near = disk((64, 64), [(30, 35, 3)])  # 5 px away: IoU ~0.1
    far = disk((64, 64), [(30, 38, 3)])  # 8 px away, no overlap
    assert detection_score(near, truth).tp == 1
    assert detection_score(far, truth) == DetectionScore(0, 1, 1)


def test_iou_over_half_matches_even_with_centroids_apart():
    truth = disk((80, 80), [(40, 40, 14)])
    pred = disk((80, 80), [(40, 47, 14)])  # 7 px apart, IoU ~0.6
    assert detection_score(pred, truth).tp == 1


def test_matching_is_one_to_one_and_maximal():
    truth = disk((64, 64), [(30, 26, 3), (30, 34, 3)])
    one_blob = disk((64, 64), [(30, 30, 3)])  # near both: matches only one
    s = detection_score(one_blob, truth)
    assert s == DetectionScore(1, 0, 1) and s.f1 == pytest.approx(2 / 3)
    # A greedy match of the first pred to the nearest truth would lose a pair here.
    pred = disk((64, 64), [(30, 29, 3), (30, 22, 3)])
    assert detection_score(pred, truth).tp == 2


def test_empty_images_and_pooling():
    empty = np.zeros((8, 8), np.int32)
    one = disk((8, 8), [(4, 4, 2)])
    assert detection_score(empty, empty).f1 == 1.0
    assert detection_score(one, empty) == DetectionScore(0, 1, 0)
    assert detection_score(empty, one) == DetectionScore(0, 0, 1)
    pooled = total([DetectionScore(8, 1, 1), DetectionScore(0, 0, 2)])
    assert pooled == DetectionScore(8, 1, 3) and pooled.f1 == pytest.approx(16 / 20)
    with pytest.raises(ValueError, match="alike"):
        detection_score(one, np.zeros((4, 4), np.int32))


def test_match_objects_names_the_true_objects_found():
    from wsitui.models.metrics import match_objects

    truth = disk((64, 64), [(10, 10, 4), (30, 40, 5), (50, 15, 3)])
    pred = disk((64, 64), [(30, 41, 5), (50, 15, 3), (5, 60, 2)])
    score, ids = match_objects(pred, truth)
    assert score == DetectionScore(2, 1, 1)
    assert sorted(ids.tolist()) == [2, 3]


def test_touching_nuclei_are_those_with_a_neighbour_within_one_diameter():
    from wsitui.models.evaluate import touching_ids

    # cx, cy, a, b, theta: a touching pair, a lone one, and one a bit more than a diameter away
    nuclei = np.array(
        [
            [20.0, 20.0, 5.0, 4.0, 0.0],
            [29.0, 20.0, 5.0, 4.0, 0.0],
            [60.0, 60.0, 5.0, 4.0, 0.0],
            [71.0, 60.0, 5.0, 4.0, 0.0],
        ]
    )
    from wsitui.slides.synthetic.generator import rasterize_nuclei

    truth = rasterize_nuclei(nuclei, 0, 0, 96, 96)
    assert touching_ids(nuclei, truth).tolist() == [1, 2]
