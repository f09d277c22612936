"""Held-out whole generated slides, one per named look, seeds training never used: the shipped
model's F1 per look and its recall on touching nuclei, pinned just under what was measured
(MODEL_CARD.md has the numbers, at 1024x1024), beside the classical fallback on the same slides.
"""

from __future__ import annotations

import pytest

from wsitui.models import cli as model_cli
from wsitui.models.classical import ClassicalModel
from wsitui.models.evaluate import HELDOUT_LOOKS, LookScore, evaluate_slides, pooled
from wsitui.models.loaded import load
from wsitui.models.source import resolve

SIZE = (1024, 1024)
# Floors just under the shipped model's scores at SIZE, seed 0 (measured: see the card).
F1_FLOOR: dict[str, float] = {
    "default": 0.99,  # measured 1.000 (classical 1.000)
    "grainy": 0.99,  # 1.000 (1.000)
    "soft": 0.96,  # 0.977 (0.971)
    "dark": 0.93,  # 0.948 (0.995)
    "clustered": 0.96,  # 0.972 (0.973)
    "pale": 0.98,  # 0.994 (0.481)
    "collagen": 0.95,  # 0.972 (0.988)
    "ihc": 0.98,  # 0.996 (1.000)
    # 0.334 (classical 1.000): it cuts big vesicular nuclei into pieces and outlines their
    # cytoplasm, as on real H&E (issue #24); a retrain reached 0.995 but lost elsewhere (card).
    "tumour": 0.30,
}
TOUCHING_RECALL_FLOOR = 0.84  # measured 0.865 of 223 (soft and clustered; classical 0.852)
# Over the nine looks the shipped model is below the classical fallback (0.903 against 0.949:
# the tumour look); over the eight others above it (0.980 against 0.945).
POOLED_F1_FLOOR = 0.89  # measured 0.903
POOLED_F1_FLOOR_BUT_TUMOUR = 0.97  # measured 0.980


@pytest.fixture(scope="module")
def shipped() -> dict[str, LookScore]:
    pytest.importorskip("torch")
    model = load(resolve("shipped"), "cpu", cpu_threads=1)
    return {r.look: r for r in evaluate_slides(model, HELDOUT_LOOKS, (0,), SIZE)}


@pytest.fixture(scope="module")
def classical() -> dict[str, LookScore]:
    return {r.look: r for r in evaluate_slides(ClassicalModel(), HELDOUT_LOOKS, (0,), SIZE)}


def test_there_are_at_least_six_heldout_looks_and_the_cli_knows_them():
    assert len(HELDOUT_LOOKS) >= 6
    assert model_cli.HELDOUT_LOOKS == HELDOUT_LOOKS


@pytest.mark.parametrize("look", HELDOUT_LOOKS)
def test_shipped_model_f1_per_look(shipped: dict[str, LookScore], look: str):
    r = shipped[look]
    assert r.score.tp + r.score.fn > 80, "each slide holds many nuclei"
    assert r.score.f1 >= F1_FLOOR[look], r.as_dict()


def test_shipped_model_separates_touching_nuclei(shipped: dict[str, LookScore]):
    n = sum(r.touching for r in shipped.values())
    found = sum(r.touching_found for r in shipped.values())
    assert n > 100, "the clustered and soft looks hold many touching nuclei"
    assert found / n >= TOUCHING_RECALL_FLOOR, (found, n)


def test_shipped_model_pooled_over_looks_beside_classical(
    shipped: dict[str, LookScore], classical: dict[str, LookScore]
):
    ours, theirs = pooled(shipped.values()), pooled(classical.values())
    assert ours.f1 >= POOLED_F1_FLOOR, (ours, theirs)
    # Beside the watershed without the tumour look, where it loses (0.334 against 1.000).
    rest = [look for look in HELDOUT_LOOKS if look != "tumour"]
    ours = pooled(shipped[look] for look in rest)
    theirs = pooled(classical[look] for look in rest)
    assert ours.f1 >= POOLED_F1_FLOOR_BUT_TUMOUR, (ours, theirs)
    assert ours.f1 > theirs.f1, (ours, theirs)
