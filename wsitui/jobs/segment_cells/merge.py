"""Seam-free merge: settle every cell near a core edge between the tiles that saw it.

Interior cells (centroid well inside their tile's core) are kept as they are: no other tile
owns them. Cells near a core edge were recorded by up to four tiles; records from different
tiles that overlap (IoU >= MATCH_IOU) are one nucleus, and exactly one record of each such
group is kept: the one deepest inside its own tile's core (the tile that saw it with the most
context around it). A near-edge record that matches nothing is kept only if its tile owns it.
So a nucleus on a seam is neither doubled (two tiles each own their version) nor lost (each
tile sees its version's centroid in the other's core).

Only near-edge records are held in memory (a thin band around each core), never a label image.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import shapely
from shapely.geometry import Polygon

from wsitui.jobs.segment_cells.extract import EDGE_OWNED, INTERIOR, CellRecords

MATCH_IOU = 0.3

TileKey = tuple[int, int]  # (col, row)


def _find(parent: dict[int, int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def settle_seams(tiles: Iterable[tuple[TileKey, CellRecords]]) -> dict[TileKey, np.ndarray]:
    """For each tile, a bool array over its records: which are kept."""
    keep: dict[TileKey, np.ndarray] = {}
    entries: list[tuple[TileKey, int]] = []  # near-edge records
    polys: list[Polygon] = []
    depth: list[float] = []
    owned: list[bool] = []
    for key, rec in tiles:
        keep[key] = rec.status == INTERIOR
        for i in np.nonzero(rec.status != INTERIOR)[0]:
            entries.append((key, int(i)))
            polys.append(Polygon(rec.ring(int(i))))
            depth.append(float(rec.depth[i]))
            owned.append(bool(rec.status[i] == EDGE_OWNED))
    if not entries:
        return keep
    tree = shapely.STRtree(polys)
    a, b = tree.query(polys, predicate="intersects")
    pairs = (
        (a < b)
        & np.array([entries[i][0] != entries[j][0] for i, j in zip(a, b, strict=True)], bool)
        if len(a)
        else np.zeros(0, bool)
    )
    parent = {i: i for i in range(len(entries))}
    for i, j in zip(a[pairs], b[pairs], strict=True):
        inter = polys[i].intersection(polys[j]).area
        union = polys[i].area + polys[j].area - inter
        if union > 0 and inter / union >= MATCH_IOU:
            ri, rj = _find(parent, int(i)), _find(parent, int(j))
            if ri != rj:
                parent[rj] = ri
    groups: dict[int, list[int]] = {}
    for i in range(len(entries)):
        groups.setdefault(_find(parent, i), []).append(i)
    for members in groups.values():
        if len(members) == 1 and not owned[members[0]]:
            continue  # only a guest saw it: the tile that owns the spot found nothing there
        best = max(members, key=lambda m: (depth[m], owned[m]))
        key, i = entries[best]
        keep[key][i] = True
    return keep
