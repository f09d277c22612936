"""MEASURE_CELLS on slides with no two stains to tell apart (hostile2 round): a greyscale scan,
or a 16-bit one read as grey. Macenko's two extremes were the same vector, the residual their
cross product was 0, and the job failed with `LinAlgError: Singular matrix`."""

from __future__ import annotations

import numpy as np
import pytest

from wsitui.jobs.measure_cells.stain import deconvolve, slide_stains


@pytest.mark.parametrize("tint", [(1.0, 1.0, 1.0), (0.9, 0.5, 0.2)])
def test_one_colour_tissue_falls_back_to_the_default_stains_with_a_warning(tint):
    rng = np.random.default_rng(0)
    level = rng.uniform(40, 220, (200, 200, 1))  # many shades of one colour
    rgb = np.clip(255 - (255 - level) * np.asarray(tint), 0, 255).astype(np.uint8)
    stains, warning = slide_stains(rgb, rgb, None, None)
    assert stains.source == "default"
    assert warning is not None and "one colour" in warning, warning
    h, e = deconvolve(rgb, stains)  # the matrix inverts: no LinAlgError
    assert np.isfinite(h).all() and np.isfinite(e).all()


def test_two_stain_tissue_still_gets_its_own_vectors():
    rng = np.random.default_rng(1)
    h = np.array([0.65, 0.70, 0.29])
    e = np.array([0.07, 0.99, 0.11])
    conc = rng.uniform(0, 1.2, (200 * 200, 2))
    od = conc[:, :1] * h / np.linalg.norm(h) + conc[:, 1:] * e / np.linalg.norm(e)
    rgb = np.clip(255 * 10**-od, 0, 255).astype(np.uint8).reshape(200, 200, 3)
    stains, warning = slide_stains(rgb, rgb, None, 255.0)
    assert stains.source == "macenko" and warning is None
