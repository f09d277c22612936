"""Overlays of a model and the classical fallback on the real check images, for README.

    PYTHONPATH=. .venv/bin/python scripts/quality_overlays.py [MODEL] [--out screenshots]

Writes `quality_<image>.png`: left the model's outlines as a job draws them (green: the
network's own; cyan: what its classical fill added or redrew whole,
`wsitui/models/classical_fill.py`; red: what its nuclear check dropped,
`wsitui/models/nuclear_gate.py`), right the classical fallback's (yellow), on the same image at
0.5 µm/px; prints the real-image measures as JSON lines, for the model as a job runs it, without
its fill (`classical_fill: off`), without its check and fill, and for the classical fallback.
The images are for checking, never for training (wsitui/models/real_images.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wsitui.jobs.segment_cells.domain import TIGHT, chromogen_share, out_of_domain
from wsitui.models.classical import ClassicalModel
from wsitui.models.evaluate import segment_image
from wsitui.models.loaded import load
from wsitui.models.real_images import load_real, overlay, real_measures
from wsitui.models.source import resolve

IMAGES = ("he_target", "he_histo", "ihc")
TILE = 256
RED = (255, 40, 40)
CYAN = (0, 220, 255)


class Tight:
    """The model as a job runs it on an out-of-domain tile (`domain.TIGHT`)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, batch: np.ndarray, postprocess: dict[str, Any] | None = None) -> np.ndarray:
        return self.model.predict(batch, postprocess={**TIGHT, **(postprocess or {})})


class With:
    """The model with some post-processing settings (`nuclear_check`, `classical_fill`)."""

    def __init__(self, model: Any, **settings: str) -> None:
        self.model = model
        self.settings = settings

    def predict(self, batch: np.ndarray, postprocess: dict[str, Any] | None = None) -> np.ndarray:
        return self.model.predict(batch, postprocess={**(postprocess or {}), **self.settings})


def dropped(raw: np.ndarray, checked: np.ndarray) -> np.ndarray:
    """The detections of `raw` that `checked` no longer has (mostly not covered by it)."""
    n = int(raw.max()) + 1
    covered = np.bincount(raw.ravel(), weights=(checked > 0).ravel(), minlength=n)
    size = np.maximum(np.bincount(raw.ravel(), minlength=n), 1)
    gone = covered / size < 0.5
    gone[0] = False
    return np.where(gone[raw], raw, 0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="shipped")
    ap.add_argument("--out", type=Path, default=Path("screenshots"))
    ap.add_argument("--crop", type=int, default=320, help="side of the crop shown (px)")
    args = ap.parse_args()
    model = load(resolve(args.model, Path.cwd()), "cpu", cpu_threads=1)
    classical = ClassicalModel()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in IMAGES:
        rgb = load_real(name)
        # As a job runs it: a DAB-stained image is out of domain, segmented with `TIGHT` (which
        # has no nuclear check, so nothing is drawn red there).
        odd = out_of_domain(chromogen_share(rgb))
        runs = {}
        for what, settings in (
            ("as a job", {}),
            ("no fill", {"classical_fill": "off"}),
            ("no check, no fill", {"classical_fill": "off", "nuclear_check": "off"}),
        ):
            m = With(model, **settings)
            runs[what] = segment_image(Tight(m) if odd else m, rgb, TILE, 64)
        pred, alone, raw = runs.values()
        base = segment_image(classical, rgb, TILE, 64)
        for what, lab in runs.items():
            m = real_measures(name, rgb, lab, base).as_dict()
            print(json.dumps({"model": model.name, "run": what, "tight": odd, **m}))
        print(json.dumps({"model": "classical", **real_measures(name, rgb, base, base).as_dict()}))
        c = min(args.crop, *rgb.shape[:2])
        sl = (slice(0, c), slice(0, c))
        filled = dropped(pred, alone)  # added or redrawn whole by the fill
        own = np.where(filled > 0, 0, pred)  # the network's own outlines the job keeps
        left = overlay(overlay(rgb[sl], dropped(raw, alone)[sl], RED), own[sl], (0, 255, 0))
        pair = np.concatenate(
            [
                overlay(left, filled[sl], CYAN),
                np.full((c, 4, 3), 255, np.uint8),
                overlay(rgb[sl], base[sl], (255, 255, 0)),
            ],
            axis=1,
        )
        Image.fromarray(pair).save(args.out / f"quality_{name}.png", optimize=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
