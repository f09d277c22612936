"""Cells and tissue files: how they load, and every bad file is one line, never a crash."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from wsitui.viewer.cells import CellIndex
from wsitui.viewer.geojson import OverlayError
from wsitui.viewer.tissue import TissueOutline

SIZE = (4096, 3072)


def square(x: float, y: float, side: float = 10) -> list[list[float]]:
    return [[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]


def feature(ring, *, kind="Polygon", object_type="detection", fid="c"):
    coords = [ring] if kind == "Polygon" else [[ring]]
    return {
        "type": "Feature",
        "id": fid,
        "geometry": {"type": kind, "coordinates": coords},
        "properties": {"objectType": object_type, "measurements": {"Area µm^2": 1.5}},
    }


def write(path: Path, features: list, *, one_per_line: bool = True) -> Path:
    if one_per_line:
        body = ",\n".join(json.dumps(f) for f in features)
        path.write_text('{"type":"FeatureCollection","features":[\n' + body + "\n]}\n")
    else:
        path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, indent=2))
    return path


def test_layouts_and_gzip_give_the_same_index(tmp_path, sample_dir):
    a = CellIndex.load(sample_dir / "cells.geojson", SIZE)
    text = (sample_dir / "cells.geojson").read_text()
    gz = tmp_path / "cells.geojson.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(text)
    pretty = tmp_path / "pretty.geojson"
    pretty.write_text(json.dumps(json.loads(text), indent=1))
    for other in (CellIndex.load(gz, SIZE), CellIndex.load(pretty, SIZE)):
        assert other.ids == a.ids
        assert np.array_equal(other.coords, a.coords)
        assert np.array_equal(other.offsets, a.offsets)
    assert a.warnings == []
    assert len(a) > 1000


def test_queries_and_the_cell_under_a_point(tmp_path):
    path = write(
        tmp_path / "c.geojson",
        [feature(square(100, 100), fid="a"), feature(square(300, 100), fid="b")],
    )
    idx = CellIndex.load(path, SIZE)
    assert list(idx.query(0, 0, 200, 200)) == [0]
    assert list(idx.query(0, 0, 400, 400)) == [0, 1]
    assert idx.at(105, 105) == 0 and idx.at(305, 105) == 1 and idx.at(200, 105) is None
    info = idx.info(1)
    assert info["id"] == "b" and info["measurements"] == {"Area µm^2": 1.5}


def test_reading_order_is_rows_then_left_to_right(tmp_path):
    # Two rows (64-px bands): the lower-left one comes after both upper ones.
    cells = [
        feature(square(500, 300), fid="lower-left"),
        feature(square(900, 10), fid="upper-right"),
        feature(square(20, 12), fid="upper-left"),
    ]
    idx = CellIndex.load(write(tmp_path / "c.geojson", cells), SIZE)
    order = []
    cur = None
    for _ in range(3):
        cur = idx.step(cur, 1, (0, 0))
        order.append(idx.ids[cur])
    assert order == ["upper-left", "upper-right", "lower-left"]
    assert idx.ids[idx.step(cur, 1, (0, 0))] == "upper-left"  # wraps
    assert idx.ids[idx.step(None, 1, (0, 200))] == "lower-left"  # first at/after a point
    assert idx.ids[idx.step(None, -1, (0, 200))] == "upper-right"  # last before it
    assert idx.ids[idx.step(None, 1, (600, 310))] == "upper-left"  # nothing after: wraps


def test_invalid_polygons_are_skipped_with_a_count(tmp_path):
    bowtie = [[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]
    cells = [
        feature(square(10, 10)),
        feature(bowtie),
        feature([[1, 2], [3, "x"]]),
        feature([[1, 1]]),
        feature([[0, 0], [1e999, 0], [0, 1], [0, 0]]),
    ]
    path = tmp_path / "c.geojson"
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": cells}).replace("Infinity", "1e999")
    )
    idx = CellIndex.load(path, SIZE)
    assert len(idx) == 1
    assert idx.warnings == [f"cells file '{path}': 4 invalid polygons were skipped "
                            "(self-crossing, under 3 points, or not numbers)"]  # fmt: skip


def test_one_skipped_feature_is_counted_in_the_singular(tmp_path):
    cells = [feature(square(10, 10)), feature([[1, 1]]), {"type": "Feature", "properties": {},
             "geometry": {"type": "Point", "coordinates": [1, 1]}}]  # fmt: skip
    path = tmp_path / "c.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": cells}))
    idx = CellIndex.load(path, SIZE)
    assert idx.warnings == [
        f"cells file '{path}': 1 feature is not a polygon and was skipped",
        f"cells file '{path}': 1 invalid polygon was skipped "
        "(self-crossing, under 3 points, or not numbers)",
    ]


def test_cells_outside_the_slide_are_counted(tmp_path):
    cells = [feature(square(10, 10)), feature(square(5000, 10)), feature(square(10, 9000))]
    idx = CellIndex.load(write(tmp_path / "c.geojson", cells), SIZE)
    assert len(idx.warnings) == 1
    assert "2 of 3 cells lie outside the slide (4096x3072 px)" in idx.warnings[0]


BAD = {
    "not json": ("hello", "is not GeoJSON"),
    "cut short": ('{"type":"FeatureCollection","features":[\n{"type":"Feature"', "cut short"),
    "cut short in a line": (
        '{"type":"FeatureCollection","features":[\n{"type":"Feature","geometry":null},\n{"type":"Fea',
        "ends inside feature 2; it was cut short",
    ),
    "no features key": ('{"type":"Feature","geometry":null}', 'no "features" array'),
    "points": (
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [1, 2]},
                        "properties": {},
                    }
                ],
            }
        ),
        "no usable cell polygons among its 1 features (1 not polygons",
    ),
    "bad json inside": (
        '{"type":"FeatureCollection","features":[\n{"a":1},\n{"a":,}\n]}',
        "is not valid JSON",
    ),
    "binary": (b"\x89PNG\r\n\x1a\n\xff\xfe", "is not"),
    "odd objectType": (
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "geometry": None, "properties": {"objectType": [1]}}
                ],
            }
        ),
        "no usable cell polygons among its 1 features",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_cells_files_are_one_line(tmp_path, case):
    content, words = BAD[case]
    path = tmp_path / "c.geojson"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(OverlayError) as err:
        CellIndex.load(path, SIZE)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_tissue_given_as_cells_says_so(sample_dir):
    with pytest.raises(OverlayError, match=r"holds annotations .* give it as --tissue"):
        CellIndex.load(sample_dir / "tissue.geojson", SIZE)


def test_missing_file(tmp_path):
    with pytest.raises(OverlayError, match="does not exist"):
        CellIndex.load(tmp_path / "nope.geojson", SIZE)
    with pytest.raises(OverlayError, match="does not exist"):
        TissueOutline.load(tmp_path / "nope.geojson", SIZE)


def test_tissue_loads_rings_and_counts_outside(tmp_path, sample_dir):
    t = TissueOutline.load(sample_dir / "tissue.geojson", SIZE)
    assert t.rings and t.warnings == [] and t.color == (0, 160, 0)
    far = write(tmp_path / "t.geojson", [feature(square(9000, 9000), object_type="annotation")])
    assert "1 of 1 rings lie outside the slide" in TissueOutline.load(far, SIZE).warnings[0]


def test_a_jobs_empty_result_loads_as_no_cells_and_no_tissue(tmp_path, sample_dir):
    """A slide without tissue gives a TISSUE_MASK and a SEGMENT_CELLS job that write valid,
    empty FeatureCollections; the viewer refused both ("has no features; give the
    cells.geojson a SEGMENT_CELLS job wrote") and showed "cells: not loaded". They load as
    0 cells and no tissue, and the picture is the slide alone."""
    from wsitui.viewer.snapshot import load_compositor, snapshot_frame

    empty = '{"type":"FeatureCollection","features":[\n\n]}\n'  # as the writers end it
    cells, tissue = tmp_path / "cells.geojson", tmp_path / "tissue.geojson"
    cells.write_text(empty)
    tissue.write_text(empty)
    idx = CellIndex.load(cells, SIZE)
    assert len(idx) == 0 and idx.warnings == [] and idx.query(0, 0, 4096, 3072).size == 0
    assert idx.step(None, 1, (0.0, 0.0)) is None and idx.at(10, 10) is None
    assert TissueOutline.load(tissue, SIZE).query(0, 0, 4096, 3072) == []
    comp, warnings = load_compositor(sample_dir / "s.svs", cells, tissue)
    bare, _ = load_compositor(sample_dir / "s.svs", None, None)
    try:
        frame = snapshot_frame(comp, (0, 0, 4096, 3072), 400)
        alone = snapshot_frame(bare, (0, 0, 4096, 3072), 400)
    finally:
        comp.source.close()
        bare.source.close()
    assert warnings == [] and frame.cells_drawn == 0 and frame.cells_mode == "outlines"
    assert np.array_equal(frame.rgb, alone.rgb)
