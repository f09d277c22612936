"""Measuring the cells of one tile: shape, and stain OD in the nucleus and in its ring.

The tile's own cells are those whose bounding-box centre falls in it (each cell in exactly one
tile). The region read around them is their bounding box grown by twice the ring width: a ring
pixel is at most `e` from its nucleus, and any nucleus nearer to it is within `e` of it, so
every nucleus that can take a ring pixel is painted too. All are rasterised into one label
image; the ring is the pixels outside every nucleus within `e` of one, each given to its
nearest nucleus (a Euclidean distance transform with indices), so rings stop half-way to a
neighbour like QuPath's cell expansion.

A tile is loaded (`load_tile`: its cells' polygons and the slide region, the I/O, which a
thread can do for the next tile while this one is measured) into numbers only (`TileInput`,
which a worker process can be sent as is) and then measured (`measure_input`) with one pass
per quantity over all its cells: shapes from the list of
nucleus pixels (`shape.py`), and per compartment one stable sort of its pixels by label, only
those pixels deconvolved, and the statistics reduced per label in that order. The values equal
`reference.py`'s, the per-region computation this replaced (tests/measure pin them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from wsitui.jobs.measure_cells.names import ALL, SHAPE
from wsitui.jobs.measure_cells.raster import paint
from wsitui.jobs.measure_cells.shape import label_order, shape_rows
from wsitui.jobs.measure_cells.source import CellIndex, ring_of
from wsitui.jobs.measure_cells.stain import Stains, deconvolve
from wsitui.slides.reader import SlideReader


@dataclass(frozen=True, slots=True)
class Scale:
    level0_per_px: float  # level-0 px per measurement px (the cells' pixel size)
    um_per_px: float  # µm per measurement px
    ring_px: float  # the ring width in measurement px


@dataclass(frozen=True, slots=True)
class TileInput:
    """What measuring a tile needs, numbers only (pickled cheaply to a worker process)."""

    own: np.ndarray  # the tile's cells (indices into the CellIndex)
    xy: np.ndarray  # (m, 2) float64: the polygons' vertices (level-0 x, y), own cells' first,
    sizes: np.ndarray  # then their neighbours'; vertices per polygon
    x0: int  # level-0 px of the region's (0, 0)
    y0: int
    rgb: np.ndarray | None  # (h, w, 3) the region at the cells' pixel size; None: not read yet
    size: tuple[int, int] = (0, 0)  # the region's (w, h) in measurement px


@dataclass(frozen=True, slots=True)
class LoadedTile:
    """A tile read: its own cells' Features (written with the measurements) and its input."""

    features: list[dict[str, Any]]
    input: TileInput


def read_scaled(reader: SlideReader, x0: int, y0: int, w: int, h: int, scale: float) -> np.ndarray:
    """(h, w, 3) RGB of the measurement-px region whose (0, 0) is level-0 (x0, y0)."""
    level = reader.best_level_for_downsample(scale)
    ds = reader.level_downsamples[level]
    lw = max(1, math.ceil(w * scale / ds))
    lh = max(1, math.ceil(h * scale / ds))
    rgb = reader.read_region((x0, y0), level, (lw, lh))
    if abs(ds - scale) > 1e-6 * scale or rgb.shape[:2] != (h, w):
        rgb = np.asarray(
            Image.fromarray(rgb).resize(
                (w, h), Image.Resampling.BOX, box=(0, 0, w * scale / ds, h * scale / ds)
            )
        )
    return rgb


def ring_limit(ring_px: float) -> int:
    """The largest squared pixel distance d2 with sqrt(d2) <= ring_px (as floats compare)."""
    t = math.floor(ring_px * ring_px)
    while math.sqrt(t + 1) <= ring_px:
        t += 1
    while t >= 0 and math.sqrt(t) > ring_px:
        t -= 1
    return t


def ring_labels(label: np.ndarray, ring_px: float) -> np.ndarray:
    """Each background pixel within `ring_px` of a nucleus, labelled with its nearest one."""
    if ring_px <= 0 or not label.any():
        return np.zeros_like(label)
    iy, ix = ndimage.distance_transform_edt(label == 0, return_distances=False, return_indices=True)
    h, w = label.shape
    # Squared distance to the nearest nucleus pixel, in place (int32: exact); a nucleus pixel
    # is its own nearest (0), so 0 < d2 <= limit is exactly the background within the ring.
    d2 = iy - np.arange(h, dtype=iy.dtype)[:, None]
    dx = ix - np.arange(w, dtype=ix.dtype)[None, :]
    np.multiply(d2, d2, out=d2)
    np.multiply(dx, dx, out=dx)
    d2 += dx
    d2 -= 1
    near = np.flatnonzero(d2.view(np.uint32) < ring_limit(ring_px))  # 0 <= d2 - 1 < limit
    out = np.zeros(label.size, np.int32)
    out[near] = label.ravel()[iy.ravel()[near] * w + ix.ravel()[near]]
    return out.reshape(label.shape)


@dataclass(frozen=True, slots=True)
class Compartment:
    """The pixels of labels 1..n in a label image, grouped by label (stable: raster order)."""

    pixels: np.ndarray  # flat indices into the image, grouped
    starts: np.ndarray  # where each present label's run begins
    present: np.ndarray  # the labels present, ascending
    counts: np.ndarray  # (n,) pixels per label 1..n

    @classmethod
    def of(cls, labels: np.ndarray, n: int) -> Compartment:
        flat = labels.ravel()
        pixels = np.flatnonzero((flat > 0) & (flat <= n))
        lab = flat[pixels]
        order = label_order(lab, n)
        pixels, lab = pixels[order], lab[order]
        starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]]) if lab.size else pixels
        counts = np.bincount(lab, minlength=n + 1)[1:]
        return cls(pixels, starts, lab[starts], counts)

    def stats(self, values: np.ndarray, n: int) -> np.ndarray:
        """(n, 4) mean, std (population), min, max of `values` (one per pixel of
        `self.pixels`, in that order) per label; NaN for a label with no pixel."""
        out = np.full((n, 4), np.nan)
        if self.pixels.size == 0:
            return out
        val = values.astype(np.float64)
        counts = self.counts[self.present - 1]
        mean = np.add.reduceat(val, self.starts) / counts
        sq = np.add.reduceat((val - np.repeat(mean, counts)) ** 2, self.starts)
        out[self.present - 1] = np.stack(
            [
                mean,
                np.sqrt(sq / counts),
                np.minimum.reduceat(val, self.starts),
                np.maximum.reduceat(val, self.starts),
            ],
            axis=1,
        )
        return out


def intensity_stats(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """(n, 4) mean, std (population), min, max of the image `values` per label 1..n."""
    part = Compartment.of(labels, n)
    return part.stats(values.ravel()[part.pixels], n)


def tile_region(
    reader: SlideReader, index: CellIndex, own: np.ndarray, sc: Scale
) -> tuple[int, int, int, int]:
    """(x0, y0, w, h): the level-0 origin and measurement-px size of the region around `own`."""
    s = sc.level0_per_px
    margin = (2 * sc.ring_px + 2) * s
    b = index.bbox[own]
    x0 = math.floor(max(0.0, b[:, 0].min() - margin))
    y0 = math.floor(max(0.0, b[:, 1].min() - margin))
    x1 = min(float(reader.dimensions[0]), b[:, 2].max() + margin)
    y1 = min(float(reader.dimensions[1]), b[:, 3].max() + margin)
    return x0, y0, max(1, math.ceil((x1 - x0) / s)), max(1, math.ceil((y1 - y0) / s))


def load_tile(
    reader: SlideReader, index: CellIndex, own: np.ndarray, sc: Scale, pixels: bool = True
) -> LoadedTile:
    """Read what measuring `own` needs: the polygons of it and its neighbours, and the pixels
    (unless not `pixels`: then whoever measures reads them, `with_pixels`)."""
    if len(own) == 0:
        empty = np.zeros((0, 2), np.float64)
        rgb = np.zeros((0, 0, 3), np.uint8)
        return LoadedTile([], TileInput(own, empty, np.zeros(0, np.int64), 0, 0, rgb))
    s = sc.level0_per_px
    x0, y0, w, h = tile_region(reader, index, own, sc)
    near = index.within(x0, y0, x0 + w * s, y0 + h * s)
    others = np.setdiff1d(near, own, assume_unique=False)
    features = index.features(np.concatenate([own, others]))
    rings = [ring_of(f) for f in features]
    xy = np.concatenate(rings)
    sizes = np.array([len(r) for r in rings], np.int64)
    rgb = read_scaled(reader, x0, y0, w, h, s) if pixels else None
    return LoadedTile(features[: len(own)], TileInput(own, xy, sizes, x0, y0, rgb, (w, h)))


def with_pixels(tile: TileInput, reader: SlideReader, sc: Scale) -> TileInput:
    """`tile` with its region read, if it was not."""
    if tile.rgb is not None:
        return tile
    w, h = tile.size
    rgb = read_scaled(reader, tile.x0, tile.y0, w, h, sc.level0_per_px)
    return replace(tile, rgb=rgb)


def measure_input(tile: TileInput, stains: Stains, sc: Scale) -> np.ndarray:
    """(len(own), 1 + len(ALL)) float64: the cell's index, then ALL's values (NaN: none)."""
    n = len(tile.own)
    rows = np.full((n, 1 + len(ALL)), np.nan)
    rows[:, 0] = tile.own
    if n == 0:
        return rows
    s = sc.level0_per_px
    assert tile.rgb is not None, "read the pixels first (with_pixels)"
    h, w = tile.rgb.shape[:2]
    label = np.zeros((h, w), np.int32)  # own cells 1..n, then their neighbours
    # Where polygons overlap by rounding, the tile's own cell wins (painted last).
    rings = np.split(tile.xy, np.cumsum(tile.sizes)[:-1])
    paint(label, rings, tile.x0, tile.y0, s)
    ring = ring_labels(label, sc.ring_px)
    n_shape = len(SHAPE) - 1
    rows[:, 1 : 1 + n_shape] = shape_rows(label, n, sc.um_per_px)
    nucleus, cytoplasm = Compartment.of(label, n), Compartment.of(ring, n)
    rows[:, 1 + n_shape] = np.where(
        nucleus.counts > 0, (nucleus.counts + cytoplasm.counts) * sc.um_per_px**2, np.nan
    )
    pixels = tile.rgb.reshape(-1, 3)
    col = 1 + len(SHAPE)
    per_stain: list[list[np.ndarray]] = [[], []]
    for part in (nucleus, cytoplasm):
        hema, eosin = deconvolve(pixels[part.pixels], stains)
        per_stain[0].append(part.stats(hema, n))
        per_stain[1].append(part.stats(eosin, n))
    for stat in per_stain[0] + per_stain[1]:  # stain, then compartment: ALL's order
        rows[:, col : col + 4] = stat
        col += 4
    return rows


def measure_tile(
    reader: SlideReader,
    index: CellIndex,
    own: np.ndarray,
    stains: Stains,
    sc: Scale,
) -> np.ndarray:
    """(len(own), 1 + len(ALL)) float64: the cell's index, then ALL's values (NaN: none)."""
    return measure_input(load_tile(reader, index, own, sc).input, stains, sc)
