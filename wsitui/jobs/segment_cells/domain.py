"""Is a tile what the model was made for? Stain, size and density checks that name the tiles.

The shipped model (and InstanSeg's brightfield model) is for H&E and haematoxylin counterstain.
On other looks it invents cells: on DAB immunohistochemistry it covered the brown epithelium
with hundreds of large jagged polygons, and its post-processing slowed 10x with the number of
seeds it proposed. So:

- Before inference, each tile's tissue pixels are unmixed with colour deconvolution
  (skimage's H-E-DAB stain matrix): a tile where more than `CHROMOGEN_SHARE` of the tissue
  holds DAB-like optical density above `CHROMOGEN_OD` is out of domain. Measured: 0.1-0.4 % of
  the tissue on the generator's four styles, 56 % on skimage's immunohistochemistry image.
  Such a tile is segmented with `TIGHT` (nucleus-sized post-processing windows, no nuclear
  check), and the job says so.
- After segmentation, a tile with detections larger than the largest nucleus the job allows
  (`max_nucleus_um`), or denser than `MAX_DENSITY_PER_MM2`, is implausible.

Every flagged tile is named (up to `NAMED`) in the manifest's warnings and the stage note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from wsitui.jobs.segment_cells.extract import EDGE_GUEST, CellRecords

CHROMOGEN_OD = 0.05  # DAB-channel optical density that counts as stained
CHROMOGEN_SHARE = 0.25  # share of the tissue above it that makes a tile out of domain
TISSUE_OD = 0.3  # summed RGB optical density of a tissue pixel (background is below)
MIN_LARGE = 3  # detections over the largest nucleus that make a tile implausible
MAX_DENSITY_PER_MM2 = 20_000.0  # one nucleus per 50 µm² of the tile's core: packed solid
NAMED = 10
# What an out-of-domain tile is segmented with, over the job's own settings: instanseg's window
# no larger than a nucleus at 0.5 µm/px (default 32), and no nuclear check
# (wsitui/models/nuclear_gate.py): it weighs haematoxylin against the band around a detection,
# which DAB overlaps; on skimage's IHC image it dropped pale epithelial nuclei in brown
# cytoplasm. Seeds are not raised (instanseg's seed_threshold 0.9 and peak_distance 8 were used
# for a model that proposed hundreds of seeds on DAB: with today's shipped model they kept 31
# of its 243 detections on that image and a third of the dark nuclei; it runs in 2.3 s there).
TIGHT: dict[str, float | int | str] = {"window_size": 24, "nuclear_check": "off"}

_HED = np.linalg.inv(
    np.array(
        [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], np.float64
    )  # skimage.color.hed_from_rgb's stain vectors (Ruifrok & Johnston)
).astype(np.float32)


def chromogen_share(rgb: np.ndarray) -> float:
    """Share of the tissue pixels of an RGB tile with DAB-like density (nan: no tissue)."""
    px = np.asarray(rgb[::2, ::2], np.float32).reshape(-1, 3)
    od = -np.log(np.maximum(px, 1.0) / 255.0)
    tissue = od.sum(axis=1) > TISSUE_OD
    if not tissue.any():
        return float("nan")
    dab = (od[tissue] / math.log(1e6)) @ _HED[:, 2]  # skimage.color.rgb2hed's scale
    return float(np.mean(dab > CHROMOGEN_OD))


def out_of_domain(share: float) -> bool:
    return bool(share > CHROMOGEN_SHARE)  # nan compares false: no tissue, nothing to say


@dataclass(slots=True)
class DomainCheck:
    """Gathers per-tile evidence while the job reads its records; `warnings()` says it."""

    mpp: float  # µm per level-0 px
    max_nucleus_um: float
    core_um2: float  # a full tile core's area in µm²
    stained: list[str] = field(default_factory=list)
    tightened: int = 0
    large: list[str] = field(default_factory=list)
    dense: list[str] = field(default_factory=list)
    largest_um2: float = 0.0

    def add(self, tile: tuple[int, int], rec: CellRecords) -> None:
        name = f"{tile[0]},{tile[1]}"
        share, tight = (float(v) for v in rec.info[:2])
        if out_of_domain(share):
            self.stained.append(name)
        if tight:
            self.tightened += 1
        owned = rec.status != EDGE_GUEST
        area_um2 = rec.area[owned] * self.mpp * self.mpp
        if len(area_um2):
            self.largest_um2 = max(self.largest_um2, float(area_um2.max()))
        biggest = math.pi * (self.max_nucleus_um / 2) ** 2
        if int(np.count_nonzero(area_um2 > biggest)) >= MIN_LARGE:
            self.large.append(name)
        if self.core_um2 > 0 and len(area_um2) / (self.core_um2 / 1e6) > MAX_DENSITY_PER_MM2:
            self.dense.append(name)

    def warnings(self) -> list[str]:
        out = []
        if self.stained:
            out.append(
                f"{len(self.stained)} tile(s) look out of domain for an H&E nuclei model "
                f"(over {CHROMOGEN_SHARE:.0%} of their tissue stained like DAB): "
                f"{_names(self.stained)}; they were segmented without the nuclear check, "
                "expect missed and invented cells there"
            )
        if self.large:
            out.append(
                f"{len(self.large)} tile(s) have detections larger than a "
                f"{self.max_nucleus_um:g} µm nucleus (largest {self.largest_um2:.0f} µm²), "
                f"implausible for nuclei: {_names(self.large)}"
            )
        if self.dense:
            out.append(
                f"{len(self.dense)} tile(s) have implausibly dense detections (over "
                f"{MAX_DENSITY_PER_MM2:,.0f}/mm²): {_names(self.dense)}"
            )
        return out

    def short(self) -> str:
        n = len(set(self.stained) | set(self.large) | set(self.dense))
        return f"{n} tile(s) look out of domain" if n else ""


def _names(tiles: list[str]) -> str:
    shown = " ".join(tiles[:NAMED])
    return shown + (f" and {len(tiles) - NAMED} more" if len(tiles) > NAMED else "")
