"""Training data and export settings of `wsitui model train` that the shipped model relies on:
the dense looks hold touching and overlapping nuclei (what merged on hidden slides), the pool
stays reproducible from its seed, and post-processing defaults land in the exported file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from wsitui.models.data import training_pool
from wsitui.models.errors import ModelError
from wsitui.slides.style import SampleStyle, dense_style, wide_style
from wsitui.slides.synthetic.generator import SamplePlan


def _touching_share(style: SampleStyle) -> float:
    plan = SamplePlan(1024, 1024, 7, style)
    nuclei, _, _ = plan.nuclei_in_cells(0, plan.cells_x, 0, plan.cells_y)
    if len(nuclei) < 2:
        return 0.0
    xy, a = nuclei[:, :2], nuclei[:, 2]
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    return float(np.mean((d <= a[:, None] + a[None]).any(axis=1)))


def test_dense_looks_pack_touching_nuclei_more_than_wide_looks():
    dense = [_touching_share(dense_style(np.random.default_rng(s))) for s in range(6)]
    wide = [_touching_share(wide_style(np.random.default_rng(s))) for s in range(6)]
    # measured: 0.21 of dense-look nuclei touch a neighbour against 0.04 of wide-look ones
    assert np.mean(dense) > 0.15, dense
    assert np.mean(dense) > 3 * np.mean(wide), (dense, wide)


def test_training_pool_is_the_same_from_the_same_seed_and_mixes_the_looks():
    a = training_pool(3, 12, 64, tumour=0.2, dense=0.6)
    b = training_pool(3, 12, 64, tumour=0.2, dense=0.6)
    assert all(
        np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True)
    )
    c = training_pool(3, 12, 64, tumour=0.2, dense=0.0)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=True))


def test_specks_add_non_nuclei_to_the_same_patches_and_leave_specks_zero_unchanged():
    plain = training_pool(3, 12, 96, tumour=0.4, dense=0.3)
    zero = training_pool(3, 12, 96, tumour=0.4, dense=0.3, specks=0.0)
    speckled = training_pool(3, 12, 96, tumour=0.4, dense=0.3, specks=1.0)
    changed = 0
    for (r0, l0), (r1, l1), (r2, l2) in zip(plain, zero, speckled, strict=True):
        assert np.array_equal(r0, r1) and np.array_equal(l0, l1)
        assert np.array_equal(l0, l2)  # the same nuclei: specks never enter the labels
        changed += not np.array_equal(r0, r2)
    assert changed >= 4


def test_postprocess_defaults_are_written_into_the_export(tmp_path: Path):
    torch = pytest.importorskip("torch")
    from wsitui.models.source import shipped_source
    from wsitui.models.train import set_postprocess

    src = shipped_source().path
    assert src is not None
    pt = tmp_path / "instanseg.pt"
    shutil.copy(src, pt)
    set_postprocess(pt, {"mask_threshold": 0.65, "peak_distance": 4})
    module = torch.jit.load(str(pt), map_location="cpu")
    assert (module.default_mask_threshold, module.default_peak_distance) == (0.65, 4)
    with pytest.raises(ModelError, match="not an instanseg default"):
        set_postprocess(pt, {"no_such_setting": 1})


def test_dark_nests_replace_some_looks_and_leave_dark_nests_zero_unchanged():
    plain = training_pool(5, 16, 64, tumour=0.4, dense=0.3)
    zero = training_pool(5, 16, 64, tumour=0.4, dense=0.3, dark_nests=0.0)
    nests = training_pool(5, 16, 64, tumour=0.4, dense=0.3, dark_nests=1.0)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(plain, zero, strict=True))
    assert sum(not np.array_equal(a[0], b[0]) for a, b in zip(plain, nests, strict=True)) >= 8
