"""Cells from a GeoJSON file, indexed once for the viewer's queries.

`CellIndex.load(path, slide_size)` streams the features (wsitui.viewer.geojson), keeps each
cell's exterior ring (the largest part of a MultiPolygon) in one flat float32 array, checks
every polygon with shapely (invalid ones are skipped and counted), and builds a shapely
STRtree over the cells' bounding boxes. Measurements are kept as columns. Problems with single
features are counted into warnings (one line each); a file with no cell polygons at all is an
OverlayError.

Reading order (for n / N): rows of ROW_BAND level-0 px top to bottom, left to right in a row.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely import STRtree

from wsitui.viewer.geojson import (
    OverlayError,
    Progress,
    classification,
    iter_features,
    polygon_rings,
)

ROW_BAND = 64.0  # level-0 px per row of the reading order
DEFAULT_COLOR = (255, 220, 0)  # cells without a classification colour
BATCH = 4096  # features turned into arrays at a time
YIELD_EVERY, YIELD_S = 512, 0.001  # parsing pauses 1 ms per 512 cells (~0.4 s per 190k)


@dataclass
class CellIndex:
    path: Path
    coords: np.ndarray  # float32 (V, 2): every ring's vertices, level-0 px
    offsets: np.ndarray  # int64 (n+1,): ring i is coords[offsets[i]:offsets[i+1]]
    bounds: np.ndarray  # float32 (n, 4): minx, miny, maxx, maxy
    centroid: np.ndarray  # float32 (n, 2)
    class_idx: np.ndarray  # uint16 (n,)
    classes: list[tuple[str, tuple[int, int, int]]]
    ids: list[str]
    measurements: dict[str, np.ndarray]  # name -> float32 (n,), NaN where a cell lacks it
    warnings: list[str] = field(default_factory=list)
    tree: STRtree = field(init=False, repr=False)
    order: np.ndarray = field(init=False, repr=False)  # reading order: cell indices
    rank: np.ndarray = field(init=False, repr=False)  # position of each cell in `order`

    def __post_init__(self) -> None:
        b = self.bounds.astype(np.float64)
        self.tree = STRtree(shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3]))
        row = np.floor(self.centroid[:, 1] / ROW_BAND)
        self.order = np.lexsort((self.centroid[:, 0], row))
        self.rank = np.empty_like(self.order)
        self.rank[self.order] = np.arange(len(self.order))

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, path: Path) -> CellIndex:
        """No cells: a FeatureCollection without features, what a SEGMENT_CELLS job that found
        none writes (it was refused as "has no features", though the job wrote it)."""
        return cls(
            path=path,
            coords=np.empty((0, 2), np.float32),
            offsets=np.zeros(1, np.int64),
            bounds=np.empty((0, 4), np.float32),
            centroid=np.empty((0, 2), np.float32),
            class_idx=np.empty(0, np.uint16),
            classes=[],
            ids=[],
            measurements={},
        )

    @property
    def median_size(self) -> float:
        """Median of the cells' larger bounding-box side, level-0 px."""
        if not len(self):
            return 0.0
        sides = np.maximum(
            self.bounds[:, 2] - self.bounds[:, 0], self.bounds[:, 3] - self.bounds[:, 1]
        )
        return float(np.median(sides))

    def ring(self, i: int) -> np.ndarray:
        return self.coords[self.offsets[i] : self.offsets[i + 1]]

    def query(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Indices (sorted) of the cells whose bounding box meets the rectangle."""
        idx = self.tree.query(shapely.box(x0, y0, x1, y1))
        return np.sort(idx)

    def at(self, x: float, y: float) -> int | None:
        """The cell containing level-0 point (x, y) (the smallest, if several), or None."""
        best, best_area = None, math.inf
        point = shapely.Point(x, y)
        for i in self.tree.query(point):
            poly = shapely.Polygon(self.ring(int(i)))
            if poly.covers(point) and poly.area < best_area:
                best, best_area = int(i), poly.area
        return best

    def step(self, current: int | None, direction: int, near: tuple[float, float]) -> int | None:
        """The next (direction 1) or previous (-1) cell in reading order after `current`, or,
        with no current cell, the first one at or after point `near` in reading order."""
        n = len(self)
        if not n:
            return None
        if current is not None:
            return int(self.order[(int(self.rank[current]) + direction) % n])
        key_row, key_x = math.floor(near[1] / ROW_BAND), near[0]
        rows = np.floor(self.centroid[self.order, 1] / ROW_BAND)
        xs = self.centroid[self.order, 0]
        after = (rows > key_row) | ((rows == key_row) & (xs >= key_x))
        pos = int(np.argmax(after)) if after.any() else 0
        if direction < 0:
            pos = (pos - 1) % n
        return int(self.order[pos])

    def info(self, i: int) -> dict[str, Any]:
        """What the side panel shows for cell i."""
        name, _ = self.classes[int(self.class_idx[i])]
        cx, cy = (float(v) for v in self.centroid[i])
        return {
            "id": self.ids[i],
            "class": name or "(none)",
            "centroid_px": (cx, cy),
            "measurements": {
                k: float(v[i]) for k, v in self.measurements.items() if not math.isnan(v[i])
            },
        }

    # ---- loading --------------------------------------------------------------------------
    @classmethod
    def load(
        cls, path: Path, slide_size: tuple[int, int], progress: Progress | None = None
    ) -> CellIndex:
        loader = _Loader()
        objects: dict[str, int] = {}
        # The parser makes millions of short-lived lists; the cyclic collector would scan
        # them over and over (it nearly doubled the time). Nothing here makes cycles.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for feature in iter_features(path, "cells", progress):
                props = feature.get("properties")
                props = props if type(props) is dict else {}
                kind = props.get("objectType", "")
                kind = kind if type(kind) is str else str(kind)
                objects[kind] = objects.get(kind, 0) + 1
                loader.add(feature, props)
                if loader.seen % YIELD_EVERY == 0:
                    time.sleep(YIELD_S)  # let the UI thread in (this loop holds the GIL)
            loader.flush()
        finally:
            if was_enabled:
                gc.enable()
        name = f"cells file '{path}'"
        if objects and set(objects) == {"annotation"}:  # (objectType values)
            # QuPath and wsitui write cells as detections (or cells), regions as annotations.
            raise OverlayError(
                f"{name} holds annotations (e.g. tissue), not cells; give it as --tissue, "
                "and cells.geojson from a SEGMENT_CELLS job as --cells"
            )
        if loader.n == 0:
            if not loader.seen:  # a valid result: a job that found no cell (no tissue) wrote it
                return cls.empty(path)
            raise OverlayError(
                f"{name} has no usable cell polygons among its {loader.seen:,} features "
                f"({loader.not_polygon:,} not polygons, {loader.invalid:,} invalid); "
                "give the cells.geojson a SEGMENT_CELLS job wrote"
            )
        index = loader.build(path)
        if loader.not_polygon:
            n = loader.not_polygon
            index.warnings.append(
                f"{name}: {n:,} feature{'s are' if n != 1 else ' is'} not "
                f"{'polygons' if n != 1 else 'a polygon'} and {'were' if n != 1 else 'was'} "
                "skipped"
            )
        if loader.invalid:
            n = loader.invalid
            index.warnings.append(
                f"{name}: {n:,} invalid polygon{'s were' if n != 1 else ' was'} skipped "
                "(self-crossing, under 3 points, or not numbers)"
            )
        b = index.bounds
        w, h = slide_size
        outside = int(
            np.count_nonzero(
                (b[:, 0] < -1) | (b[:, 1] < -1) | (b[:, 2] > w + 1) | (b[:, 3] > h + 1)
            )
        )
        if outside:
            index.warnings.append(
                f"{name}: {outside:,} of {len(index):,} cells lie outside the slide ({w}x{h} px); "
                "is it for another slide?"
            )
        return index


class _Loader:
    """Accumulates features in batches of plain arrays."""

    def __init__(self) -> None:
        self.n = 0
        self.seen = 0
        self.not_polygon = 0
        self.invalid = 0
        self._rings: list[np.ndarray] = []
        self._ids: list[str] = []
        self._cls: list[int] = []
        self._meas: list[dict[str, Any]] = []
        self.classes: list[tuple[str, tuple[int, int, int]]] = []
        self._class_key: dict[tuple[Any, str], int] = {}
        self._last_class: Any = object()  # nothing equals it
        self._last_ci = -1
        self.coords: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.ids: list[str] = []
        self.cls: list[np.ndarray] = []
        self.columns: dict[str, list[np.ndarray]] = {}
        self.batches: list[int] = []

    def add(self, feature: dict[str, Any], props: dict[str, Any]) -> None:
        self.seen += 1
        geometry = feature.get("geometry")
        coords = geometry.get("coordinates") if type(geometry) is dict else None
        if type(coords) is list and coords and geometry.get("type") == "Polygon":  # type: ignore[union-attr]
            ring = coords[0]  # the exterior (the common case, without a call)
        else:
            rings = polygon_rings(geometry)
            if rings is None:
                self.not_polygon += 1
                return
            # A MultiPolygon's part with the most vertices.
            ring = max(rings, key=_size, default=[])
        self._rings.append(ring)
        fid = feature.get("id", props.get("id", ""))
        self._ids.append(fid if type(fid) is str else str(fid) if fid is not None else "")
        c = props.get("classification")
        if c == self._last_class:  # runs of cells of one class: no lookup
            ci = self._last_ci
        else:
            key = (c.get("name"), str(c.get("color"))) if isinstance(c, dict) else (str(c), "")
            ci = self._class_key.get(key, -1)
            if ci < 0:
                name, color = classification(props)
                ci = self._class_key[key] = len(self.classes)
                self.classes.append((name, color or DEFAULT_COLOR))
            self._last_class, self._last_ci = c, ci
        self._cls.append(ci)
        m = props.get("measurements")
        self._meas.append(m if type(m) is dict else {})
        if len(self._rings) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self._rings:
            return
        n = len(self._rings)
        regular = _regular_batch(self._rings)
        if regular is not None:  # every ring closed, finite, >= 4 points: no per-ring work
            coords, lengths = regular
            keep = np.arange(n)
        else:
            arrays = [_one_ring(r) for r in self._rings]
            keep = np.array([i for i, a in enumerate(arrays) if a is not None], np.int64)
            self.invalid += n - len(keep)
            if not len(keep):
                self._reset()
                return
            lengths = np.array([len(arrays[i]) for i in keep], np.int64)  # type: ignore[arg-type]
            coords = np.concatenate([arrays[i] for i in keep])  # type: ignore[misc]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        polys = shapely.from_ragged_array(
            shapely.GeometryType.POLYGON, coords, (offsets, np.arange(len(lengths) + 1))
        )
        ok = shapely.is_valid(polys)
        if not ok.all():
            self.invalid += int(np.count_nonzero(~ok))
            take = np.concatenate(
                [np.arange(offsets[j], offsets[j + 1]) for j in np.nonzero(ok)[0]] or [[]]
            ).astype(np.int64)
            coords, lengths, keep = coords[take], lengths[ok], keep[ok]
        if not len(keep):
            self._reset()
            return
        self.coords.append(coords.astype(np.float32))
        self.lengths.append(lengths)
        all_kept = len(keep) == n
        ids = self._ids if all_kept else [self._ids[i] for i in keep]
        meas = self._meas if all_kept else [self._meas[i] for i in keep]
        self.ids.extend(ids)
        self.cls.append(np.asarray(self._cls, np.uint16)[keep])
        start = self.n
        for name in set().union(*meas):
            col = self.columns.setdefault(name, [])
            have = sum(len(c) for c in col)
            if have < start:
                col.append(np.full(start - have, np.nan, np.float32))
            values = [m.get(name, math.nan) for m in meas]
            try:
                col.append(np.array(values, np.float32))
            except (ValueError, TypeError):  # a value that is not a number
                col.append(np.array([_number(v) for v in values], np.float32))
        self.n += len(keep)
        self._reset()

    def _reset(self) -> None:
        self._rings, self._ids, self._cls, self._meas = [], [], [], []

    def build(self, path: Path) -> CellIndex:
        coords = np.concatenate(self.coords)
        lengths = np.concatenate(self.lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        starts = offsets[:-1]
        mins_x = np.minimum.reduceat(coords[:, 0], starts)
        mins_y = np.minimum.reduceat(coords[:, 1], starts)
        maxs_x = np.maximum.reduceat(coords[:, 0], starts)
        maxs_y = np.maximum.reduceat(coords[:, 1], starts)
        # Vertex mean without the closing vertex (which repeats the first).
        sums = np.add.reduceat(coords.astype(np.float64), starts, axis=0) - coords[offsets[1:] - 1]
        centroid = (sums / (lengths - 1)[:, None]).astype(np.float32)
        measurements = {}
        for name, parts in self.columns.items():
            col = np.concatenate(parts) if parts else np.empty(0, np.float32)
            if len(col) < self.n:
                col = np.concatenate([col, np.full(self.n - len(col), np.nan, np.float32)])
            measurements[name] = col
        return CellIndex(
            path=path,
            coords=coords,
            offsets=offsets,
            bounds=np.stack([mins_x, mins_y, maxs_x, maxs_y], axis=1),
            centroid=centroid,
            class_idx=np.concatenate(self.cls),
            classes=self.classes,
            ids=self.ids,
            measurements=measurements,
        )


def _number(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _size(ring: Any) -> int:
    return len(ring) if isinstance(ring, list) else 0


def _regular_batch(rings: list[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(coords (V, 2) float64, lengths) of a batch whose rings are all lists of [x, y] numbers,
    finite, closed and at least 4 points long, converted at once; None if any is not."""
    try:
        lengths = np.array([len(r) for r in rings], np.int64)
        flat = np.fromiter(chain.from_iterable(chain.from_iterable(rings)), np.float64)
    except (ValueError, TypeError):
        return None
    # Every point [x, y]: checked by count (an [x] balanced by an [x, y, z] would pass,
    # drawing that one cell wrong; nothing crashes).
    if len(flat) != 2 * int(lengths.sum()) or int(lengths.min()) < 4 or not np.isfinite(flat).all():
        return None
    coords = flat.reshape(-1, 2)
    ends = np.cumsum(lengths)
    if not (coords[ends - lengths] == coords[ends - 1]).all():
        return None
    return coords, lengths


def _one_ring(ring: Any) -> np.ndarray | None:
    try:
        a = np.asarray(ring, np.float64)
    except (ValueError, TypeError):
        return None
    if a.ndim != 2 or a.shape[1] < 2 or len(a) < 3 or not np.isfinite(a).all():
        return None
    a = np.ascontiguousarray(a[:, :2])
    if not np.array_equal(a[0], a[-1]):
        a = np.concatenate([a, a[:1]])
    return a if len(a) >= 4 else None
