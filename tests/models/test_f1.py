"""Held-out detection F1 of the shipped model and of the classical fallback, through the same
`predict` a job uses, on 20 generated 256² images in styles (the named looks `grainy`, `soft`,
`dark` and random looks from another seed stream) and patch seeds training never used."""

from __future__ import annotations

import numpy as np
import pytest

from wsitui.models.classical import ClassicalModel
from wsitui.models.data import HELDOUT_SEED_BASE, Sample, heldout_set
from wsitui.models.evaluate import evaluate
from wsitui.models.loaded import load
from wsitui.models.source import resolve

F1_TARGET = 0.90


@pytest.fixture(scope="module")
def heldout() -> list[Sample]:
    return heldout_set(20, 256)


def test_shipped_model_f1_on_heldout_images(heldout: list[Sample]):
    pytest.importorskip("torch")
    result = evaluate(load(resolve("shipped"), "cpu", cpu_threads=1), heldout)
    assert result.score.tp > 300, "the held-out set holds hundreds of nuclei"
    assert result.score.f1 >= F1_TARGET, result


def test_classical_fallback_f1_on_the_same_images(heldout: list[Sample]):
    result = evaluate(ClassicalModel(), heldout)
    assert result.score.f1 >= F1_TARGET, result


@pytest.mark.parametrize("which", ["classical", "shipped"])
def test_nothing_is_found_on_glass_or_eosin_alone(which: str):
    if which == "shipped":
        pytest.importorskip("torch")
    model = (
        ClassicalModel() if which == "classical" else load(resolve("shipped"), "cpu", cpu_threads=1)
    )
    rng = np.random.default_rng(0)
    glass = np.clip(rng.normal(242, 2, (1, 256, 256, 3)), 0, 255).astype(np.uint8)
    eosin = np.clip(rng.normal((225, 150, 195), 8, (1, 256, 256, 3)), 0, 255).astype(np.uint8)
    assert model.predict(glass).max() == 0
    assert model.predict(eosin).max() == 0


def test_heldout_seeds_are_outside_the_training_range():
    from wsitui.models import data

    seeds: list[int] = []
    real = data.render_patch

    def spy(style, size, seed, mpp):  # type: ignore[no-untyped-def]
        seeds.append(seed)
        return real(style, (32, 32), seed, mpp)

    mp = pytest.MonkeyPatch()
    mp.setattr(data, "render_patch", spy)
    try:
        data.heldout_set(5, 32)
        n = len(seeds)
        data.training_pool(0, 5, 32)
    finally:
        mp.undo()
    assert all(s >= HELDOUT_SEED_BASE for s in seeds[:n])
    assert all(s < HELDOUT_SEED_BASE for s in seeds[n:])


def test_shipped_model_stays_quiet_on_nucleus_free_tissue():
    """Grainy eosin, lumens, soft edges and blur without a single nucleus, in every named look:
    a model that learned "dark spot after stretching" finds dozens per tile here."""
    pytest.importorskip("torch")
    from dataclasses import replace

    from wsitui.slides.patches import render_patch
    from wsitui.slides.style import STYLES

    model = load(resolve("shipped"), "cpu", cpu_threads=1)
    found = []
    for i, name in enumerate(("default", "grainy", "soft", "dark")):
        rgb, truth = render_patch(
            replace(STYLES[name], nucleus_density=0.0), (256, 256), 2**30 + 5 + i
        )
        assert truth.max() == 0
        found.append(int(model.predict(rgb[None]).max()))
    assert sum(found) <= 5, found
