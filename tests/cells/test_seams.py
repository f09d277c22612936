"""Tiles, seams and outlines of the SEGMENT_CELLS pipeline, with nuclei planted exactly on tile
borders and corners.

The model here is a test double that labels dark pixels (so the truth is known exactly and the
test isolates tiling, extraction and the seam merge); the real models have their own tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image
from scipy import ndimage
from shapely.geometry import Polygon, shape
from skimage.draw import disk, ellipse

from wsitui.jobs.common.shards import ShardStore
from wsitui.jobs.segment_cells.backends.local import run_tiles, shard_key
from wsitui.jobs.segment_cells.extract import CellRecords
from wsitui.jobs.segment_cells.merge import settle_seams
from wsitui.jobs.segment_cells.plan import plan_tiles
from wsitui.jobs.segment_cells.trace import outlines, ring_area
from wsitui.jobs.segment_cells.write import CellWriter
from wsitui.slides.reader import open_slide


class DarkBlobs:
    """Test double for a model: each 8-connected dark blob is one instance."""

    pixel_size = 0.5

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = np.zeros(batch.shape[:3], np.int32)
        for i, rgb in enumerate(batch):
            out[i], _ = ndimage.label(rgb.mean(axis=2) < 128, structure=np.ones((3, 3)))
        return out


class JitteryBlobs(DarkBlobs):
    """Like a real model, sees each nucleus a little differently from each tile: every blob
    loses its outermost column or row on a side chosen from the tile's position. A nucleus on a
    seam then has a different centroid in each tile, which is what can double or drop it."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = super().predict(batch)
        for i, lab in enumerate(out):
            rng = np.random.default_rng(int(batch[i, ::97, ::89].sum()) + i)
            for label, sl in enumerate(ndimage.find_objects(lab), start=1):
                if sl is None:
                    continue
                view = lab[sl]
                side = rng.integers(4)
                edge = (view[:, :1], view[:, -1:], view[:1, :], view[-1:, :])[side]
                edge[edge == label] = 0
        return out


TILE = 256


def planted_slide(tmp_path: Path, size: int = 1400, seed: int = 0) -> tuple[Path, np.ndarray]:
    """White image, dark nuclei on every tile border and corner and in between; truth labels."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((size, size), np.int32)
    n = 0
    centres = []
    for k in range(1, size // TILE + 1):
        b = k * TILE
        for t in range(40, size - 40, 97):
            centres += [(b + rng.uniform(-1, 1), t), (t, b + rng.uniform(-1, 1))]
        for k2 in range(1, size // TILE + 1):
            centres.append((b, k2 * TILE))  # exactly on a corner
    centres += [tuple(rng.uniform(20, size - 20, 2)) for _ in range(150)]
    for cx, cy in centres:
        a, bb = rng.uniform(4, 9, 2)
        rr, cc = ellipse(cy, cx, a, bb, shape=truth.shape, rotation=rng.uniform(0, np.pi))
        if len(rr) == 0 or truth[rr, cc].any() or _touches(truth, rr, cc):
            continue
        n += 1
        truth[rr, cc] = n
    rgb = np.full((size, size, 3), 235, np.uint8)
    rgb[truth > 0] = (60, 30, 110)
    path = tmp_path / "planted.png"
    Image.fromarray(rgb).save(path)
    return path, truth


def _touches(truth: np.ndarray, rr: np.ndarray, cc: np.ndarray) -> bool:
    m = np.zeros(truth.shape, bool)
    m[rr, cc] = True
    return bool(truth[ndimage.binary_dilation(m, iterations=2)].any())


def segment(path: Path, out: Path, *, tile: int = TILE, model=None) -> list[dict]:
    reader = open_slide(path)
    plan = plan_tiles(
        reader, slide_mpp=0.5, model_px=0.5, tile_size=tile, max_nucleus_um=10, tissue=None
    )
    shards = ShardStore(out / "shards", {"t": tile})
    run_tiles(
        reader,
        plan,
        model or DarkBlobs(),
        shards,
        batch_size=2,
        min_area_px=4,
        read_threads=2,
        on_progress=lambda p: None,
        check_cancel=lambda: None,
    )

    def records():
        for t in plan.tiles:
            yield (t.col, t.row), CellRecords.from_bytes(shards.get_bytes(shard_key(t)))

    keep = settle_seams(records())
    with CellWriter(out, job_id="j", mpp=0.5, gz=True) as w:
        for key, rec in records():
            w.add(rec, keep[key], key)
    reader.close()
    return json.loads((out / "cells.geojson").read_text())["features"]


def test_nuclei_on_borders_and_corners_are_kept_once_and_whole(tmp_path):
    path, truth = planted_slide(tmp_path)
    features = segment(path, tmp_path)
    n_true = int(truth.max())
    assert n_true > 250
    assert len(features) == n_true  # none doubled, none lost
    hit = np.zeros(n_true + 1, int)
    for f in features:
        poly = shape(f["geometry"])
        assert poly.is_valid
        c = poly.representative_point()
        label = truth[int(c.y), int(c.x)]
        assert label > 0
        hit[label] += 1
        # whole, not cut at a seam: the polygon's area is the nucleus' pixel count
        assert poly.area == pytest.approx(np.count_nonzero(truth == label), abs=0.5)
    assert (hit[1:] == 1).all()


def test_nuclei_seen_differently_by_neighbour_tiles_are_neither_doubled_nor_lost(tmp_path):
    path, truth = planted_slide(tmp_path, seed=1)
    features = segment(path, tmp_path, model=JitteryBlobs())
    hit = np.zeros(int(truth.max()) + 1, int)
    for f in features:
        poly = shape(f["geometry"])
        c = poly.representative_point()
        label = truth[int(c.y), int(c.x)]
        hit[label] += 1
        true_area = np.count_nonzero(truth == label)
        assert true_area - 20 <= poly.area <= true_area  # one column/row less at most
    assert hit[0] == 0
    assert (hit[1:] == 1).all(), f"doubled: {np.sum(hit > 1)}, lost: {np.sum(hit[1:] == 0)}"


def test_geojson_is_strict_json_that_qupath_reads_as_detections(tmp_path):
    path, _ = planted_slide(tmp_path, size=600)
    features = segment(path, tmp_path)
    text = (tmp_path / "cells.geojson").read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
    assert doc["type"] == "FeatureCollection"
    ids = [f["id"] for f in features]
    assert len(set(ids)) == len(ids)
    for f in features:
        props = f["properties"]
        assert props["objectType"] == "detection"
        assert props["classification"]["name"] == "Nucleus"
        assert len(props["classification"]["color"]) == 3
        assert set(props["measurements"]) >= {"Area µm^2", "Perimeter µm", "Centroid X µm"}
        assert all(isinstance(v, float) for v in props["measurements"].values())
        ring = f["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and Polygon(ring).exterior.is_ccw
    import gzip

    assert json.loads(gzip.decompress((tmp_path / "cells.geojson.gz").read_bytes())) == doc
    rows = (tmp_path / "cells.csv").read_text().splitlines()
    assert rows[0].startswith("id,centroid_x_px") and len(rows) == len(features) + 1


def test_outlines_fill_back_to_the_pixels_and_are_valid():
    rng = np.random.default_rng(3)
    lab = np.zeros((300, 300), np.int32)
    for n in range(1, 200):
        rr, cc = disk(rng.integers(0, 300, 2), rng.integers(2, 12), shape=lab.shape)
        lab[rr, cc] = n  # overlapping disks: touching, cut and diagonal instances
    rings = outlines(lab)
    for label, ring in rings.items():
        assert Polygon(ring).is_valid, label
        _, k = ndimage.label(lab == label)
        if k == 1:
            filled = ndimage.binary_fill_holes(lab == label).sum()
            assert ring_area(ring) == filled
    assert set(rings) == set(np.unique(lab)) - {0}
    assert shapely.__version__  # shapely is what QuPath-valid means here
