"""From one tile's instance labels to the cells that tile keeps, as a compact record set.

The seam rule: a tile owns the cells whose centroid lies in its core (cores partition the
slide), so a cell is kept once. Two tiles can segment a nucleus on a core edge a little
differently and both (or neither) see its centroid in their own core; so a tile also records
the cells whose centroid lies within `band` px of a core edge, inside or outside, and the merge
(`merge.py`) settles each such cell between the tiles that saw it. Cells touching the read
region's edge where it is not the slide's edge are cut: they are dropped (with an overlap larger
than any nucleus, the tile that owns such a cell sees it whole). Cells smaller than `min_area`
model px are dropped as slivers.

Coordinates in the records are level-0 pixels, (0, 0) at the slide's top-left corner. When the
slide is finer than the model (scale > 1, e.g. 40x read at 0.5 µm/px) the outlines are smoothed
(`trace.smooth_ring`, area kept) rather than drawn in steps of `scale` slide pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from wsitui.jobs.common.grid import Tile
from wsitui.jobs.segment_cells.trace import outlines, ring_measures, smooth_ring

INTERIOR, EDGE_OWNED, EDGE_GUEST = 0, 1, 2  # record status


@dataclass(slots=True)
class CellRecords:
    """Cells of one tile: ring vertices concatenated, `starts` (n + 1) offsets into them."""

    xy: np.ndarray  # (v, 2) float64 level-0 px
    starts: np.ndarray  # (n + 1,) int64
    centroid: np.ndarray  # (n, 2) float64 level-0 px
    area: np.ndarray  # (n,) level-0 px²
    perimeter: np.ndarray  # (n,) level-0 px
    status: np.ndarray  # (n,) uint8: INTERIOR, EDGE_OWNED or EDGE_GUEST
    depth: np.ndarray  # (n,) model px from the centroid to the core edge (< 0: outside)
    # (2,) what the tile looked like: share of its tissue stained by a chromogen (DAB-like,
    # see domain.py; nan: not measured) and 1.0 when its post-processing was tightened
    info: np.ndarray = field(default_factory=lambda: np.array([np.nan, 0.0]))

    def __len__(self) -> int:
        return len(self.area)

    def ring(self, i: int) -> np.ndarray:
        return self.xy[self.starts[i] : self.starts[i + 1]]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **{k: getattr(self, k) for k in self.__dataclass_fields__})
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> CellRecords:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            # `info` came later: a shard without it (the Dask worker's) is still whole.
            return cls(**{k: z[k] for k in cls.__dataclass_fields__ if k != "info" or k in z})

    @classmethod
    def empty(cls) -> CellRecords:
        z = np.zeros(0)
        return cls(
            np.zeros((0, 2)),
            np.zeros(1, np.int64),
            np.zeros((0, 2)),
            z,
            z,
            np.zeros(0, np.uint8),
            z,
        )


def extract(
    labels: np.ndarray,
    tile: Tile,
    *,
    scale: float,
    valid: tuple[int, int],
    level_dims: tuple[int, int],
    band: int,
    min_area: float,
) -> CellRecords:
    """`labels`: the model output for the tile's padded input; `valid`: (h, w) of real pixels;
    `level_dims`: (w, h) of the virtual model-px level (to tell slide edges from tile edges);
    `min_area` in model px²."""
    vh, vw = valid
    lab = np.ascontiguousarray(labels[:vh, :vw]).astype(np.int64, copy=False)
    n = int(lab.max()) if lab.size else 0
    if n == 0:
        return CellRecords.empty()
    count = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
    yy, xx = np.indices(lab.shape)
    sx = np.bincount(lab.ravel(), weights=xx.ravel(), minlength=n + 1)
    sy = np.bincount(lab.ravel(), weights=yy.ravel(), minlength=n + 1)
    present = count > 0
    present[0] = False
    with np.errstate(invalid="ignore", divide="ignore"):
        cx, cy = sx / count + 0.5, sy / count + 0.5  # pixel centres, corner-based coords
    # Cut by the read region's edge (where that is not the slide's edge)?
    rx, ry, rw, rh = tile.read
    lw, lh = level_dims
    cut = np.zeros(n + 1, bool)
    if rx > 0:
        cut[np.unique(lab[:, 0])] = True
    if ry > 0:
        cut[np.unique(lab[0, :])] = True
    if rx + rw < lw:
        cut[np.unique(lab[:, -1])] = True
    if ry + rh < lh:
        cut[np.unique(lab[-1, :])] = True
    # Distance of the centroid inside the core (negative: outside it).
    core_x, core_y = tile.core[0] - rx, tile.core[1] - ry
    core_w, core_h = tile.core[2], tile.core[3]
    depth = np.minimum.reduce(
        [cx - core_x, core_x + core_w - cx, cy - core_y, core_y + core_h - cy]
    )
    # Edges of the core on the slide's border have no neighbour: no seam there.
    inner = np.full(n + 1, np.inf)
    for d, at_border in (
        (cx - core_x, tile.core[0] == 0),
        (core_x + core_w - cx, tile.core[0] + core_w >= lw),
        (cy - core_y, tile.core[1] == 0),
        (core_y + core_h - cy, tile.core[1] + core_h >= lh),
    ):
        if not at_border:
            inner = np.minimum(inner, d)
    owned = depth > 0
    near = np.abs(inner) <= band
    keep = present & ~cut & (count >= max(1.0, min_area)) & (owned | near)
    ids = np.nonzero(keep)[0]
    if len(ids) == 0:
        return CellRecords.empty()
    rings = outlines(np.where(np.isin(lab, ids), lab, 0))
    ids = np.array([i for i in ids if i in rings], np.int64)
    ox, oy = rx * scale, ry * scale  # level-0 origin of the read region
    if scale > 1 + 1e-6:  # a slide finer than the model: no model-pixel steps in the outlines
        rings = {int(i): smooth_ring(rings[int(i)]) for i in ids}
    pieces = [rings[int(i)] * scale + (ox, oy) for i in ids]
    starts = np.zeros(len(ids) + 1, np.int64)
    starts[1:] = np.cumsum([len(p) for p in pieces])
    status = np.where(owned[ids], np.where(near[ids], EDGE_OWNED, INTERIOR), EDGE_GUEST)
    xy = np.concatenate(pieces) if pieces else np.zeros((0, 2))
    area, perimeter = ring_measures(xy, starts)
    return CellRecords(
        xy=xy,
        starts=starts,
        centroid=np.stack([cx[ids] * scale + ox, cy[ids] * scale + oy], axis=1),
        area=area,
        perimeter=perimeter,
        status=status.astype(np.uint8),
        depth=depth[ids],
    )
