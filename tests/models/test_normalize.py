"""The input normalisation shared by training and inference."""

from __future__ import annotations

import numpy as np
import pytest

from wsitui.models.normalize import normalize_batch


def test_tissue_tile_is_stretched_to_about_zero_to_one_per_channel():
    rng = np.random.default_rng(0)
    tile = np.stack(
        [
            rng.integers(40, 230, (64, 64)),
            rng.integers(20, 200, (64, 64)),
            rng.integers(90, 250, (64, 64)),
        ],
        axis=-1,
    ).astype(np.uint8)
    x = normalize_batch(tile[None])
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    for c in range(3):
        assert x[0, c].min() == pytest.approx(0, abs=0.02)
        assert x[0, c].max() == pytest.approx(1, abs=0.02)


def test_glass_tile_noise_is_not_stretched_into_contrast():
    rng = np.random.default_rng(1)
    glass = np.clip(rng.normal(242, 2, (1, 64, 64, 3)), 0, 255).astype(np.uint8)
    x = normalize_batch(glass)
    assert float(x.max() - x.min()) < 0.35  # ±3 sigma of noise over a 64-level floor


def test_each_tile_of_a_batch_has_its_own_statistics():
    dark = np.full((16, 16, 3), 60, np.uint8)
    dark[:8] = 160
    light = dark.copy() + 80
    x = normalize_batch(np.stack([dark, light]))
    np.testing.assert_allclose(x[0], x[1], atol=1e-5)
