"""The model layer's per-tile work after the network (wsitui/models/finish.py): one colour
deconvolution a tile for the nuclear check, the classical fallback's segmentation and the fill's
evidence, with the same labels as each computing its own (the code before 2026-12-06)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from wsitui.models import classical, classical_fill, finish, nuclear_gate


def _old(rgb: np.ndarray, raw: np.ndarray, check: bool, fill: bool) -> np.ndarray:
    """The post-processing as it ran before: check, then fill, each deconvolving the tile."""
    lab = raw
    if check:
        lab = nuclear_gate.check(rgb, lab)[0]
    if fill:
        lab = classical_fill.fill(rgb, lab)
    return lab


@functools.cache
def _tiles() -> dict[str, np.ndarray]:
    from wsitui.models.evaluate import heldout_slide
    from wsitui.models.real_images import load_real

    out = {}
    for look in ("pale", "collagen", "tumour", "ihc"):
        out[look] = np.ascontiguousarray(heldout_slide(look, 0).rgb[384:640, 384:640])
    out["he_target"] = load_real("he_target")[:256, :256].copy()
    return out


def test_one_deconvolution_a_tile_for_the_check_and_the_fill(monkeypatch):
    rgb = _tiles()["tumour"]
    raw = classical.segment_tile(rgb[:, ::-1].copy())  # labels that are not the fill's own
    calls = []
    real = classical.rgb2hed

    def counted(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return real(x)

    for mod in (finish, nuclear_gate, classical):
        monkeypatch.setattr(mod, "rgb2hed", counted, raising=False)
        monkeypatch.setattr(mod, "deconvolve", counted, raising=False)
    finish.finish_batch(np.stack([rgb, rgb]), np.stack([raw, raw]), check=True, fill=True)
    assert len(calls) == 2  # one a tile (before: three)
    calls.clear()
    finish.finish_tile(rgb, np.zeros_like(raw), check=True, fill=False)
    assert not calls  # nothing to check: no deconvolution


def test_the_labels_are_those_of_each_step_deconvolving_on_its_own():
    pytest.importorskip("torch")
    from wsitui.models.loaded import load
    from wsitui.models.source import resolve

    model = load(resolve("shipped"), "cpu", cpu_threads=1)
    off = {"nuclear_check": "off", "classical_fill": "off"}
    changed = 0
    for name, rgb in _tiles().items():
        raw = model.predict(rgb[None], postprocess=off)[0]
        for check in (True, False):
            for fill in (True, False):
                got, counts = finish.finish_tile(rgb, raw, check=check, fill=fill)
                want = _old(rgb, raw, check, fill)
                assert np.array_equal(got, want), f"{name}: check {check}, fill {fill}"
                assert got.dtype == want.dtype
                assert (counts is not None) == check
                changed += not np.array_equal(got, raw)
        # What the model's predict runs (every job path) is the same.
        both = model.predict(rgb[None])[0]
        assert np.array_equal(both, _old(rgb, raw, True, True)), name
    assert changed >= 5  # the check and the fill did change labels on these tiles


def test_the_deconvolution_is_skimages_to_the_last_bit():
    from skimage.color import rgb2hed

    levels = np.arange(256, dtype=np.uint8)
    # Every uint8 level in every channel, against each of a spread of the others.
    r, g, b = np.meshgrid(levels, levels[::5], levels[::17], indexing="ij")
    every = np.stack([r, g, b], axis=-1).reshape(256, -1, 3)
    for rgb in (every, every[..., ::-1], _tiles()["he_target"], _tiles()["ihc"][:, ::-1]):
        got, want = classical.deconvolve(rgb), rgb2hed(rgb)
        assert got.dtype == want.dtype == np.float64
        assert np.array_equal(got, want)
    as_float = every.astype(np.float32) / 255  # not uint8: skimage's own
    assert np.array_equal(classical.deconvolve(as_float), rgb2hed(as_float))
