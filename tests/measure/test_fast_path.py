"""The fast measurement equals the reference computation it replaced (`reference.py`):
on real tiles of a generated slide, and on random regions against regionprops itself."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import regionprops

from wsitui.jobs.measure_cells import reference
from wsitui.jobs.measure_cells.executor import _tiles
from wsitui.jobs.measure_cells.measure import Scale, measure_tile, ring_labels
from wsitui.jobs.measure_cells.raster import paint
from wsitui.jobs.measure_cells.shape import rasterise, shape_rows
from wsitui.jobs.measure_cells.source import index_cells
from wsitui.jobs.measure_cells.stain import Stains
from wsitui.slides.reader import open_slide
from wsitui.slides.sample import load_truth
from wsitui.slides.style import EOSIN_OD, HEMATOXYLIN_OD

MPP = 0.5


def write_cells(slide: Path, out: Path, decimals: int) -> None:
    """cells.geojson of the slide's true nuclei (24-vertex ellipses), one Feature a line as
    SEGMENT_CELLS writes it, with coordinates rounded to `decimals` (0.5 px when None)."""
    truth = load_truth(slide)
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    lines = []
    for i, (cx, cy, a, b, th) in enumerate(truth.nuclei.tolist()):
        x = cx + a * np.cos(t) * math.cos(th) - b * np.sin(t) * math.sin(th)
        y = cy + a * np.cos(t) * math.sin(th) + b * np.sin(t) * math.cos(th)
        xy = np.stack([x, y], 1)
        xy = np.round(xy * 2) / 2 if decimals < 0 else np.round(xy, decimals)
        ring = [*xy.tolist(), xy[0].tolist()]
        geometry = {"type": "Polygon", "coordinates": [ring]}
        feature = {"type": "Feature", "id": f"c{i}", "geometry": geometry}
        lines.append(json.dumps(feature, separators=(",", ":")))
    out.mkdir(parents=True, exist_ok=True)
    body = ",\n".join(lines)
    (out / "cells.geojson").write_text(f'{{"type":"FeatureCollection","features":[\n{body}\n]}}\n')


@pytest.mark.parametrize("decimals", [2, -1], ids=["0.01 px", "half px"])
@pytest.mark.parametrize("ring_um", [5.0, 0.0])
def test_tiles_of_a_slide_measure_the_same_as_the_reference(
    tmp_path: Path, sample_slide: Path, decimals: int, ring_um: float
) -> None:
    write_cells(sample_slide, tmp_path, decimals)
    index = index_cells(tmp_path, lambda: None)
    tiles = sorted(_tiles(index, 512), key=lambda t: -len(t[1]))[:3]
    assert sum(len(own) for _, own in tiles) > 100
    h, e = (tuple(np.asarray(v) / np.linalg.norm(v)) for v in (HEMATOXYLIN_OD, EOSIN_OD))
    stains = Stains(h, e, 240.0, "param")  # type: ignore[arg-type]
    sc = Scale(1.0, MPP, ring_um / MPP)
    reader = open_slide(str(sample_slide))
    try:
        for _, own in tiles:
            fast = measure_tile(reader, index, own, stains, sc)
            ref = reference.measure_tile(reader, index, own, stains, sc)
            assert np.array_equal(np.isnan(fast), np.isnan(ref))
            assert (~np.isnan(fast)).mean() > (0.9 if ring_um else 0.6)
            np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-12)
    finally:
        reader.close()


def random_regions(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A label image of overlapping random blobs, some cut by the image edge, some in pieces."""
    h, w = (int(v) for v in rng.integers(5, 70, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    label = np.zeros((h, w), np.int32)
    n = int(rng.integers(1, 7))
    for k in range(1, n + 2):  # label n + 1: a neighbour, not measured
        blob = rng.random((h, w)) < rng.uniform(0.02, 0.6)
        blob = ndimage.binary_dilation(blob, iterations=int(rng.integers(0, 3)))
        cy, cx, ry, rx = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, h), rng.uniform(1, w)
        label[blob & (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)] = k
    return label, n


def test_shapes_of_random_regions_equal_regionprops() -> None:
    rng = np.random.default_rng(7)
    um = 0.5
    for _ in range(150):
        label, n = random_regions(rng)
        got = shape_rows(label, n, um)
        props = {p.label: p for p in regionprops(label)}
        for k in range(1, n + 1):
            if k not in props:
                assert np.isnan(got[k - 1]).all()
                continue
            p = props[k]
            want = [
                p.area * um**2,
                p.perimeter * um,
                min(1.0, 4 * math.pi * p.area / p.perimeter**2) if p.perimeter > 0 else 1.0,
                p.solidity,
                p.eccentricity,
                p.axis_major_length * um,
                p.axis_minor_length * um,
                math.degrees(p.orientation),
            ]
            # atol: regionprops' own eigenvalues of a one-pixel-wide region are ~1e-7, not 0
            np.testing.assert_allclose(got[k - 1], want, rtol=1e-9, atol=1e-6)


def test_rings_of_random_regions_equal_the_reference() -> None:
    rng = np.random.default_rng(3)
    for ring_px in (1.0, 2.5, math.sqrt(8), 5.0):
        for _ in range(20):
            label, _ = random_regions(rng)
            label[rng.random(label.shape) < 0.7] = 0  # scattered: many equidistant pixels
            assert np.array_equal(
                ring_labels(label, ring_px), reference.ring_labels(label, ring_px)
            )


@pytest.mark.parametrize("grid", [0.0, 0.01, 0.5, 1.0], ids=["float", "0.01", "half", "whole"])
def test_painting_all_polygons_equals_rasterising_each(grid: float) -> None:
    """paint() against rasterise() one polygon at a time, last to first (the first wins):
    random, overlapping, cut by the edge, self-intersecting, and with coordinates on grids
    that put vertices and edges exactly on pixel centres."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        h, w = (int(v) for v in rng.integers(20, 120, 2))
        x0, y0 = (float(v) for v in rng.integers(0, 5000, 2))
        scale = (1.0, 2.0, 0.5, 1.3)[trial % 4]
        rings = []
        for _ in range(int(rng.integers(1, 30))):
            m = int(rng.integers(3, 25))
            t = np.sort(rng.uniform(0, 2 * np.pi, m)) if trial % 3 else rng.uniform(0, 7, m)
            radius = rng.uniform(1, 25) * (1 + 0.3 * rng.standard_normal(m))
            cx = x0 + rng.uniform(-20, w * scale + 20)
            cy = y0 + rng.uniform(-20, h * scale + 20)
            ring = np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1)
            if grid:
                ring = np.round(ring / grid) * grid
            rings.append(np.vstack([ring, ring[:1]]) if trial % 2 else ring)
        want = np.zeros((h, w), np.int32)
        for k in range(len(rings) - 1, -1, -1):
            rasterise(want, rings[k], k + 1, x0, y0, scale)
        got = np.zeros((h, w), np.int32)
        paint(got, rings, x0, y0, scale)
        assert np.array_equal(got, want)
