"""Ground truth of a synthetic slide: the `NAME.truth.npz` sidecar beside `NAME.svs`.

`tissue` (bool grid, one cell per `tissue_downsample` level-0 px), `nuclei` (N x 5 float64:
cx, cy, a, b, theta in level-0 px / radians; draw them with `rasterize_nuclei`), plus `width`,
`height`, `seed`, `mpp`, `version`, and since version 2 `generator`, `slide` (the file name it
belongs to) and `style` (JSON of the SampleStyle).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsitui.slides.errors import SlideError, quoted
from wsitui.slides.style import DEFAULT_STYLE, SampleStyle
from wsitui.slides.synthetic.sidecar import TRUTH_SUFFIX, truth_path_for

TRUTH_VERSION = 2  # 2: records the generator, the slide's file name and the style
GENERATOR = "wsitui.sample"
_V1_KEYS = {"version", "width", "height", "seed", "mpp", "tissue", "tissue_downsample", "nuclei"}


@dataclass(frozen=True, slots=True)
class SampleTruth:
    """Ground truth of a sample slide (see module docstring for the exact meaning)."""

    width: int
    height: int
    seed: int
    mpp: float
    tissue: np.ndarray  # bool (rows, cols); cell (i, j) = level-0 block at (j*ds, i*ds)
    tissue_downsample: float  # level-0 px per tissue pixel
    nuclei: np.ndarray  # float64 (N, 5): cx, cy, a, b, theta (level-0 px, radians)
    style: SampleStyle = DEFAULT_STYLE
    slide: str | None = None  # file name of the slide it belongs to (version 1: not recorded)


def load_truth(path: Path) -> SampleTruth:
    """Load a sidecar written by write_sample_slide (give the .truth.npz or the slide path)."""
    path = Path(path)
    if not path.name.endswith(TRUTH_SUFFIX):
        path = truth_path_for(path)
    if not path.is_file():
        raise SlideError(f"ground truth {quoted(path)} does not exist; regenerate the sample")
    try:
        with np.load(path, allow_pickle=False) as z:
            version = int(z["version"])
            if version not in (1, TRUTH_VERSION):
                raise SlideError(
                    f"ground truth {quoted(path)} has version {version}, expected "
                    f"{TRUTH_VERSION}; regenerate the sample"
                )
            extra: dict[str, Any] = {}
            if version >= 2:
                extra = {"style": SampleStyle.from_json(str(z["style"])), "slide": str(z["slide"])}
            return SampleTruth(
                width=int(z["width"]),
                height=int(z["height"]),
                seed=int(z["seed"]),
                mpp=float(z["mpp"]),
                tissue=z["tissue"].astype(bool),
                tissue_downsample=float(z["tissue_downsample"]),
                nuclei=z["nuclei"].astype(np.float64),
                **extra,
            )
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as e:
        raise SlideError(f"ground truth {quoted(path)} is unreadable: {e}") from e


def is_sample_truth(path: Path, slide: Path) -> bool:
    """Whether `path` is a truth sidecar this module wrote that may be replaced for `slide`:
    it names this slide, or a slide that no longer exists (version 1 named none)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if int(z["version"]) == 1:
                return keys == _V1_KEYS
            if str(z["generator"]) != GENERATOR:
                return False
            owner = str(z["slide"])
    except Exception:  # not an npz, not ours
        return False
    return owner == slide.name or not (path.parent / owner).exists()
