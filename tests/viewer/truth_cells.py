"""A cells.geojson made from a sample slide's ground truth (the tests' and benchmark's cells).

Each true nucleus becomes a `vertices`-gon on its ellipse, written in the same layout as a
SEGMENT_CELLS job (wsitui.jobs.segment_cells.write): a FeatureCollection of detections with a
UUID-like id, the Nucleus classification and measurements.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import IO

import numpy as np

NUCLEUS = {"name": "Nucleus", "color": [0, 90, 200]}


def ellipse_rings(nuclei: np.ndarray, vertices: int = 16) -> np.ndarray:
    """(N, vertices + 1, 2) closed rings, counter-clockwise in image coordinates."""
    t = np.linspace(0, 2 * math.pi, vertices, endpoint=False)
    cx, cy, a, b, th = (nuclei[:, i : i + 1] for i in range(5))
    u, v = a * np.cos(t), b * np.sin(t)
    x = cx + u * np.cos(th) - v * np.sin(th)
    y = cy + u * np.sin(th) + v * np.cos(th)
    rings = np.stack([x, y], axis=2)
    return np.concatenate([rings, rings[:, :1]], axis=1)


def write_cells_geojson(
    nuclei: np.ndarray, path: Path, *, mpp: float = 0.499, vertices: int = 16
) -> int:
    rings = np.round(ellipse_rings(nuclei, vertices), 2)
    opener = gzip.open if path.name.endswith(".gz") else open
    f: IO[str]
    with opener(path, "wt", encoding="utf-8") as f:  # type: ignore[operator]
        f.write('{"type":"FeatureCollection","features":[\n')
        for i, (ring, n) in enumerate(zip(rings, nuclei, strict=True)):
            area = math.pi * n[2] * n[3] * mpp * mpp
            feature = {
                "type": "Feature",
                "id": f"00000000-0000-4000-8000-{i:012d}",
                "geometry": {"type": "Polygon", "coordinates": [ring.tolist()]},
                "properties": {
                    "objectType": "detection",
                    "classification": NUCLEUS,
                    "measurements": {
                        "Area µm^2": round(area, 3),
                        "Centroid X µm": round(float(n[0]) * mpp, 3),
                        "Centroid Y µm": round(float(n[1]) * mpp, 3),
                    },
                },
            }
            text = json.dumps(feature, separators=(",", ":"), ensure_ascii=False)
            f.write((",\n" if i else "") + text)
        f.write("\n]}\n")
    return len(nuclei)


def write_tissue_geojson(tissue: np.ndarray, downsample: float, path: Path) -> None:
    """The truth tissue mask traced into tissue.geojson, as a TISSUE_MASK job writes it."""
    from wsitui.jobs.common.geojson import TISSUE, feature_collection, mask_polygons, write_geojson

    polygons = mask_polygons(tissue, (downsample, downsample))
    write_geojson(path, feature_collection(polygons, TISSUE))
