"""QuPath-ready GeoJSON: masks traced into polygons, written as a FeatureCollection.

`mask_polygons` traces a boolean mask along pixel edges (no smoothing, no diagonal cuts), so
rasterising the polygons gives the mask back exactly. Tissue is 4-connected: two pixels that
touch only at a corner belong to different polygons, which then touch at that point (valid).
Each 4-connected piece becomes one Polygon with its holes; anything shapely calls invalid is
repaired with `make_valid` before it is written.

Coordinates are level-0 pixels with (0, 0) at the image's top-left corner, as QuPath reads
them. Features carry a UUID `id`, `properties.objectType` and a `classification` with a
colour (QuPath's reader throws on a classification name without one). Output is strict JSON.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, mapping

from wsitui.jobs.common.files import write_atomic

E, S, W, N = 0, 1, 2, 3  # edge directions in image coordinates (y down)


@dataclass(frozen=True, slots=True)
class Classification:
    name: str
    color: tuple[int, int, int]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "color": list(self.color)}


TISSUE = Classification("Tissue", (0, 160, 0))


def _edges(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Directed boundary edges with tissue on their right: (x0, y0, dir, px_row, px_col)."""
    h, w = mask.shape
    p = np.zeros((h + 2, w + 2), np.int8)
    p[1:-1, 1:-1] = mask
    parts = []
    # One nonzero per orientation (the costly part on big masks); the side the tissue is on
    # gives the direction.
    i, j = np.nonzero(p[1:, 1:-1] != p[:-1, 1:-1])  # (h+1, w): edge y = i, x from j to j+1
    below = p[i + 1, j + 1].astype(bool)
    # Tissue below: east from (j, i), right side = pixel (i, j); above: west from (j+1, i),
    # right side = pixel (i-1, j).
    parts.append((j + ~below, i, np.where(below, E, W), i - ~below, j))
    i, j = np.nonzero(p[1:-1, 1:] != p[1:-1, :-1])  # (h, w+1): edge x = j, y from i to i+1
    right = p[i + 1, j + 1].astype(bool)
    # Tissue right: north from (j, i+1), right side = (i, j); left: south from (j, i),
    # right side = (i, j-1).
    parts.append((j, i + right, np.where(right, N, S), i, j - ~right))
    return tuple(np.concatenate(c).astype(np.int64) for c in zip(*parts, strict=True))


_STEP = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)], np.int64)  # E, S, W, N


def _rings(mask: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Closed boundary rings as (corner vertices (n, 2) x/y, a right-side pixel index)."""
    x0, y0, d, pr, pc = _edges(mask)
    if len(x0) == 0:
        return []
    w = mask.shape[1]
    nv = w + 1
    x1, y1 = x0 + _STEP[d, 0], y0 + _STEP[d, 1]
    key = (y0 * nv + x0) * 4 + d
    order = np.argsort(key)
    skey = key[order]
    end = y1 * nv + x1
    nxt = np.full(len(d), -1, np.int64)
    # At a vertex where two rings meet (a diagonal pair of pixels), turn right, towards the
    # tissue: each 4-connected piece keeps its own ring. Elsewhere the way on is unique.
    for turn in (1, 0, 3):
        want = end * 4 + (d + turn) % 4
        pos = np.clip(np.searchsorted(skey, want), 0, len(skey) - 1)
        hit = (skey[pos] == want) & (nxt < 0)
        nxt[hit] = order[pos[hit]]
    corner = d[nxt] != d  # the edge ends where the boundary turns
    # Only corners matter: jump from each corner edge straight to the next one (pointer
    # doubling, a few numpy passes), so the Python walk below visits corners only.
    ahead = np.where(corner, np.arange(len(d)), nxt)
    while not (done := corner[ahead]).all():
        ahead = np.where(done, ahead, ahead[ahead])
    nxt = ahead[nxt]  # for a corner edge: the next corner edge on its ring
    nxt_l = nxt.tolist()
    x1_l, y1_l = x1.tolist(), y1.tolist()
    seen = bytearray(len(d))
    rings = []
    for start in np.nonzero(corner)[0].tolist():
        if seen[start]:
            continue
        px = int(pr[start] * w + pc[start])
        # Where the ring comes back to a vertex it passed (a pinch at a diagonal pixel pair),
        # the loop since then is cut off as a ring of its own: every ring is simple, so a
        # hole touching its shell at a point needs no repair.
        pts: list[tuple[int, int]] = []
        at: dict[tuple[int, int], int] = {}
        e = start
        while not seen[e]:
            seen[e] = 1
            v = (x1_l[e], y1_l[e])
            i = at.get(v)
            if i is not None:
                loop = pts[i:]
                del pts[i:]
                for u in loop:
                    del at[u]
                rings.append((np.asarray(loop, np.float64), px))
            at[v] = len(pts)
            pts.append(v)
            e = nxt_l[e]
        rings.append((np.asarray(pts, np.float64), px))
    return rings


def mask_polygons(mask: np.ndarray, downsample: tuple[float, float] = (1.0, 1.0)) -> list[Polygon]:
    """Valid polygons (one per 4-connected piece, holes kept) in level-0 px.

    downsample: level-0 px per mask px (x, y); mask pixel (i, j) covers level-0
    [j*dx, (j+1)*dx] x [i*dy, (i+1)*dy].
    """
    mask = np.asarray(mask, bool)
    labels, n = ndimage.label(mask)  # 4-connected, as the tracer separates diagonal pixels
    flat = labels.ravel()
    shells: dict[int, np.ndarray] = {}
    holes: dict[int, list[np.ndarray]] = {}
    scale = np.asarray(downsample, np.float64)
    for pts, px in _rings(mask):
        piece = int(flat[px])
        xy = pts * scale
        # Tissue is on the right in y-down coordinates: a shell has positive shoelace area.
        x, y = pts[:, 0], pts[:, 1]
        area2 = float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))
        if area2 > 0:
            shells[piece] = xy
        else:
            holes.setdefault(piece, []).append(xy)
    out: list[Polygon] = []
    for piece in range(1, n + 1):
        poly = Polygon(shells[piece], holes.get(piece, []))
        if not poly.is_valid:  # a ring touching itself at a corner: same area, valid form
            fixed = shapely.make_valid(poly)
            parts = [g for g in getattr(fixed, "geoms", [fixed]) if isinstance(g, Polygon)]
            out.extend(p for p in parts if not p.is_empty)
        else:
            out.append(poly)
    return [shapely.orient_polygons(p) for p in out]  # RFC 7946: shells CCW, holes CW


def feature_collection(
    polygons: Sequence[Polygon | MultiPolygon],
    classification: Classification,
    object_type: str = "annotation",
    properties: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    features = []
    for i, poly in enumerate(polygons):
        props: dict[str, Any] = {
            "objectType": object_type,
            "classification": classification.as_json(),
        }
        if properties is not None:
            props.update(properties[i])
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid4()),
                "geometry": mapping(poly),
                "properties": props,
            }
        )
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: Path, collection: dict[str, Any]) -> None:
    """Strict JSON (NaN or infinity is an error, not a token QuPath cannot parse)."""
    data = json.dumps(collection, allow_nan=False, separators=(",", ":"))
    write_atomic(path, data.encode())
