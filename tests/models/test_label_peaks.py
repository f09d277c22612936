"""`label_peaks` and the classical fallback's label medians are skimage's and scipy's answers,
faster: the same peaks in the same order, the same medians, so the default model's cells do not
change with them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.color import rgb2hed
from skimage.feature import peak_local_max

from wsitui.models import classical
from wsitui.models.label_peaks import label_peaks
from wsitui.slides.patches import render_patch
from wsitui.slides.style import dense_style, tumour_style


def _skimage(image: np.ndarray, labels: np.ndarray, md: int) -> np.ndarray:
    return peak_local_max(image, min_distance=md, labels=labels, exclude_border=False)


@pytest.mark.parametrize("make", [dense_style, tumour_style])
def test_peaks_of_a_generated_tile_are_skimages(make):
    # What the classical fallback asks for: the smoothed distance map of its nuclei, per
    # connected nucleus, on packed tissue (hundreds of labels, ties on ridges).
    rgb, _ = render_patch(make(np.random.default_rng([77, 1])), (256, 256), 4242, 0.5)
    h = ndimage.gaussian_filter(rgb2hed(rgb)[..., 0], classical.SMOOTH_PX)
    fg = classical.nuclear_foreground(h, rgb)
    dist = ndimage.gaussian_filter(ndimage.distance_transform_edt(fg), classical.PEAK_SMOOTH_PX)
    comp, n = ndimage.label(fg)
    assert n > 10
    for md in (1, 2, 4, 6):
        assert np.array_equal(label_peaks(dist, comp, md), _skimage(dist, comp, md))


def test_peaks_of_touching_labels_flat_images_and_integers_are_skimages():
    # Labels that touch (not connected components), ids missing, flat plateaus (skimage keeps
    # only the pixels an opening removes there), integer images.
    rng = np.random.default_rng(0)
    for k in range(60):
        h, w = (int(v) for v in rng.integers(5, 70, 2))
        if k % 3 == 0:
            image = rng.integers(0, 3, (h, w)).astype(np.float64)
        else:
            image = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0, 3))
        labels = rng.integers(0, int(rng.integers(1, 8)), (h, w))
        if k % 2:
            labels = ndimage.median_filter(labels, 3)
        md = int(rng.integers(1, 6))
        assert np.array_equal(label_peaks(image, labels, md), _skimage(image, labels, md)), k
        as_int = (image * 10).astype(np.int32)
        assert np.array_equal(label_peaks(as_int, labels, md), _skimage(as_int, labels, md)), k


def test_no_label_no_peak():
    assert label_peaks(np.ones((8, 8)), np.zeros((8, 8), np.int32), 4).shape == (0, 2)


def test_label_medians_are_scipys():
    rng = np.random.default_rng(2)
    for _ in range(50):
        h = ndimage.gaussian_filter(rng.random((60, 60)), 1)
        comp, n = ndimage.label(h > np.quantile(h, rng.uniform(0.3, 0.8)))
        expected = np.asarray(ndimage.median(h, comp, np.arange(1, n + 1)), np.float64)
        assert np.array_equal(classical._label_medians(h, comp, n), expected)
