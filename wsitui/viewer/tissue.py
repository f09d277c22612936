"""The tissue outline overlay: every ring (exteriors and holes) of a tissue GeoJSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from wsitui.viewer.geojson import (
    OverlayError,
    Progress,
    classification,
    iter_features,
    polygon_rings,
)

DEFAULT_COLOR = (0, 160, 0)
CELL_OBJECTS = ("detection", "cell")  # objectType of cells; tissue is an "annotation"


@dataclass
class TissueOutline:
    path: Path
    rings: list[np.ndarray]  # float64 (k, 2) level-0 px, closed
    bounds: np.ndarray  # (n, 4) minx, miny, maxx, maxy per ring
    color: tuple[int, int, int]
    warnings: list[str] = field(default_factory=list)

    def query(self, x0: float, y0: float, x1: float, y1: float) -> list[np.ndarray]:
        b = self.bounds
        hit = (b[:, 0] <= x1) & (b[:, 2] >= x0) & (b[:, 1] <= y1) & (b[:, 3] >= y0)
        return [self.rings[i] for i in np.nonzero(hit)[0]]

    @classmethod
    def load(
        cls, path: Path, slide_size: tuple[int, int], progress: Progress | None = None
    ) -> TissueOutline:
        rings: list[np.ndarray] = []
        color: tuple[int, int, int] | None = None
        seen = invalid = cells = 0
        for feature in iter_features(path, "tissue", progress):
            seen += 1
            props = feature.get("properties")
            if isinstance(props, dict) and props.get("objectType") in CELL_OBJECTS:
                cells += 1
            found = polygon_rings(feature.get("geometry"))
            if found is None:
                continue
            if color is None and isinstance(props, dict):
                color = classification(props)[1]
            for ring in found:
                try:
                    a = np.asarray(ring, np.float64)
                except (ValueError, TypeError):
                    invalid += 1
                    continue
                if a.ndim != 2 or a.shape[1] < 2 or len(a) < 4 or not np.isfinite(a).all():
                    invalid += 1
                    continue
                if not shapely.is_valid(shapely.Polygon(a[:, :2])):
                    invalid += 1
                    continue
                rings.append(a[:, :2])
        name = f"tissue file '{path}'"
        if seen and cells == seen:
            # QuPath and wsitui write cells as detections (or cells), regions as annotations:
            # thousands of nuclei were drawn as tissue outlines without a word.
            raise OverlayError(
                f"{name} holds cells (detections), not tissue; give it as --cells, and "
                "tissue.geojson from a TISSUE_MASK job as --tissue"
            )
        if not rings and seen == 0:  # a valid result: a TISSUE_MASK job that found no tissue
            return cls(path, [], np.empty((0, 4)), color or DEFAULT_COLOR)
        if not rings:
            raise OverlayError(
                f"{name} has no usable polygons among its {seen:,} features; "
                "give the tissue.geojson a TISSUE_MASK job wrote"
            )
        bounds = np.array(
            [[r[:, 0].min(), r[:, 1].min(), r[:, 0].max(), r[:, 1].max()] for r in rings]
        )
        out = cls(path, rings, bounds, color or DEFAULT_COLOR)
        if invalid:
            out.warnings.append(f"{name}: {invalid:,} invalid rings were skipped")
        w, h = slide_size
        outside = int(
            np.count_nonzero(
                (bounds[:, 0] < -1)
                | (bounds[:, 1] < -1)
                | (bounds[:, 2] > w + 1)
                | (bounds[:, 3] > h + 1)
            )
        )
        if outside:
            out.warnings.append(
                f"{name}: {outside:,} of {len(rings):,} rings lie outside the slide ({w}x{h} px); "
                "is it for another slide?"
            )
        return out
