"""Held-out detection F1 of a model (the number on the model card and in the tests)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from wsitui.models.data import Sample, heldout_set
from wsitui.models.loaded import LoadedModel
from wsitui.models.metrics import DetectionScore, detection_score, total


@dataclass(frozen=True, slots=True)
class Evaluation:
    score: DetectionScore
    per_image: tuple[float, ...]
    seconds: float


def evaluate(
    model: LoadedModel,
    images: list[Sample] | None = None,
    postprocess: dict[str, Any] | None = None,
) -> Evaluation:
    """Pooled detection F1 of `model` on `images` (default: 20 held-out 256² images)."""
    images = images if images is not None else heldout_set()
    t0 = time.monotonic()
    scores = []
    for rgb, truth in images:
        pred = model.predict(rgb[None], postprocess)[0]
        scores.append(detection_score(pred, truth))
    return Evaluation(total(scores), tuple(s.f1 for s in scores), time.monotonic() - t0)
