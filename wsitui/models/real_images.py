"""What a model does on real images (for checking, never for training or tuning).

Three small real images ship with packages (see tests/models/data/README.md for sources and
licences), all used at the models' 0.5 µm/px:

- `he_target`: tiatoolbox 2.1.3 `target_image.png` (H&E, 1000² at ~0.25 µm/px), box-averaged to
  500² at 0.5 µm/px.
- `he_histo`: stardist 0.9.2 `histo.jpg` (H&E, TCGA, 500×300, ~0.5 µm/px), as is.
- `ihc`: scikit-image's `data.immunohistochemistry()` (colon, haematoxylin + DAB, 512²). Its
  pixel size is not recorded; epithelial nuclei are ~20 × 8 px and stromal ones ~20 × 5 px,
  which at 0.5 µm/px is 10 × 4 µm and 10 × 2.5 µm, as in colonic mucosa: taken as 0.5 µm/px.
  (Wrapping it as 2048² at 0.6 µm/px, as a 4× upsample, would make nuclei 48 µm long.)

An InstanSeg model is measured as a job runs it: with its nuclear check (`nuclear_check =
"auto"`, wsitui/models/nuclear_gate.py); `scripts/quality_overlays.py` prints it without too.

Measures (`real_measures`), with no truth, against the classical fallback on the same image:
- `low_h_share`: share of detections whose mean haematoxylin OD (skimage `rgb2hed`) is below
  the 5th percentile of the classical fallback's detections: outlines on collagen, cytoplasm,
  eosin or DAB rather than on nuclei.
- `dark_recall`: of the classical detections that are dark (mean haematoxylin OD above the
  median of its detections), nucleus-sized (20-400 px, 5-100 µm²) and isolated (no other
  classical detection's centre within 1.5 of its diameters), the share the model finds (centroids
  within 6 px, one to one): nuclei both should find.
- `max_area_um2`: the largest detection.
- On IHC, the DAB compartment (DAB OD, smoothed, above `DAB_OD_MIN`): detections whose
  centroid lies in it, per 1000 µm² of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.color import rgb2hed

PIXEL_SIZE = 0.5
DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "models" / "data"
REAL_IMAGES = {
    "he_target": "tiatoolbox_target_image_0.5um.jpg",
    "he_histo": "stardist_histo.jpg",
}
DAB_OD_MIN = 0.08
DARK_AREA_PX = (20, 400)
ISOLATION = 1.5  # no other classical detection's centre within this many diameters


def load_real(name: str, data_dir: Path = DATA_DIR) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a real image at 0.5 µm/px; FileNotFoundError naming it."""
    if name == "ihc":
        from skimage import data

        return np.ascontiguousarray(data.immunohistochemistry()[..., :3])
    path = data_dir / REAL_IMAGES[name]
    if not path.is_file():
        raise FileNotFoundError(f"real image {name!r} is missing: expected {path}")
    return np.asarray(Image.open(path).convert("RGB"))


def _stats(labels: np.ndarray, channel: np.ndarray) -> tuple[np.ndarray, ...]:
    """(ids, areas px, mean channel value, centroids (n, 2) row/col) of the labels."""
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    if not ids.size:
        return ids, areas, np.zeros(0), np.zeros((0, 2))
    means = np.asarray(ndimage.mean(channel, labels, ids), float)
    cents = np.asarray(ndimage.center_of_mass(np.ones_like(labels), labels, ids), float)
    return ids, areas, means, cents.reshape(-1, 2)


@dataclass(frozen=True, slots=True)
class RealMeasures:
    image: str
    detections: int
    classical_detections: int
    low_h_share: float
    dark_reference: int
    dark_recall: float
    max_area_um2: float
    dab_detections: int = 0
    dab_per_1000um2: float = 0.0
    dab_area_share: float = 0.0

    def as_dict(self) -> dict[str, float | int | str]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def real_measures(
    image: str, rgb: np.ndarray, pred: np.ndarray, classical: np.ndarray
) -> RealMeasures:
    """The measures of the module docstring for `pred` against `classical` on `rgb`."""
    hed = rgb2hed(rgb)
    h = hed[..., 0]
    _, p_area, p_h, p_cent = _stats(pred, h)
    _, c_area, c_h, c_cent = _stats(classical, h)
    cut = float(np.percentile(c_h, 5)) if c_h.size else 0.0
    low = float(np.mean(p_h < cut)) if p_h.size else 0.0
    # Dark, nucleus-sized, isolated classical detections.
    ref = np.zeros(0, int)
    if c_h.size:
        ok = (c_h > np.median(c_h)) & (c_area >= DARK_AREA_PX[0]) & (c_area <= DARK_AREA_PX[1])
        diam = 2 * np.sqrt(c_area / np.pi)
        if len(c_cent) > 1:
            d, _ = cKDTree(c_cent).query(c_cent, k=2)
            ok &= d[:, 1] > ISOLATION * diam
        ref = np.flatnonzero(ok)
    found = 0
    if ref.size and p_cent.size:
        pairs = cKDTree(c_cent[ref]).query_ball_tree(cKDTree(p_cent), 6.0)
        used: set[int] = set()
        for near in pairs:
            free = [j for j in near if j not in used]
            if free:
                used.add(free[0])
                found += 1
    recall = found / ref.size if ref.size else 1.0
    px_um2 = PIXEL_SIZE**2
    out = RealMeasures(
        image=image,
        detections=int(p_area.size),
        classical_detections=int(c_area.size),
        low_h_share=low,
        dark_reference=int(ref.size),
        dark_recall=recall,
        max_area_um2=float(p_area.max() * px_um2) if p_area.size else 0.0,
    )
    if image != "ihc":
        return out
    dab = ndimage.gaussian_filter(hed[..., 2], 2.0) > DAB_OD_MIN
    in_dab = 0
    if p_cent.size:
        r = np.clip(np.round(p_cent[:, 0]).astype(int), 0, dab.shape[0] - 1)
        c = np.clip(np.round(p_cent[:, 1]).astype(int), 0, dab.shape[1] - 1)
        in_dab = int(dab[r, c].sum())
    dab_um2 = float(dab.sum()) * px_um2
    return RealMeasures(
        **{
            **asdict(out),
            "dab_detections": in_dab,
            "dab_per_1000um2": 1000 * in_dab / dab_um2 if dab_um2 else 0.0,
            "dab_area_share": float(dab.mean()),
        }
    )


def overlay(rgb: np.ndarray, labels: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """`rgb` with the outlines of `labels` drawn in `color` (one px, inner boundary)."""
    from skimage.segmentation import find_boundaries

    out = rgb.copy()
    out[find_boundaries(labels, mode="inner")] = color
    return out
