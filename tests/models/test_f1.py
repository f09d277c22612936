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
    result = evaluate(load(resolve("shipped"), "cpu"), heldout)
    assert result.score.tp > 300, "the held-out set holds hundreds of nuclei"
    assert result.score.f1 >= F1_TARGET, result


def test_classical_fallback_f1_on_the_same_images(heldout: list[Sample]):
    result = evaluate(ClassicalModel(), heldout)
    assert result.score.f1 >= F1_TARGET, result


def test_classical_finds_nothing_on_glass_or_eosin_alone():
    model = ClassicalModel()
    glass = np.full((1, 128, 128, 3), 242, np.uint8)
    rng = np.random.default_rng(0)
    eosin = np.clip(rng.normal((225, 150, 195), 8, (1, 128, 128, 3)), 0, 255).astype(np.uint8)
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
