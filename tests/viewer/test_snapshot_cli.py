"""`wsitui view --snapshot`: the PNG is the composed view; bad input is one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from wsitui.cli import main
from wsitui.viewer.compose import Layers
from wsitui.viewer.snapshot import load_compositor
from wsitui.viewer.view import View


@pytest.mark.parametrize(
    ("region", "width"),
    [("1500,1000,1000,640", 640), ("0,0,4096,3072", 320), ("3900,3000,400,300", 200)],
)
def test_snapshot_equals_the_composed_view(sample_dir, tmp_path, capsys, region, width):
    out = tmp_path / "snap.png"
    args = ["view", str(sample_dir / "s.svs"), "--cells", str(sample_dir / "cells.geojson")]
    args += ["--tissue", str(sample_dir / "tissue.geojson"), "--snapshot", str(out)]
    assert main([*args, "--region", region, "--width", str(width)]) == 0
    png = np.asarray(Image.open(out).convert("RGB"))
    comp, warnings = load_compositor(
        sample_dir / "s.svs", sample_dir / "cells.geojson", sample_dir / "tissue.geojson"
    )
    x, y, w, h = (float(v) for v in region.split(","))
    view = View.of_region((4096, 3072), (x, y, w, h), width)
    frame = comp.compose_sync(view, Layers())
    comp.source.close()
    assert warnings == []
    assert png.shape == (round(h * width / w), width, 3)
    assert np.array_equal(png, frame.rgb)
    assert f"{width}x{png.shape[0]} px" in capsys.readouterr().out


def test_snapshot_never_loads_textual(sample_dir, tmp_path):
    code = (
        "import sys; from wsitui.cli import main; "
        f"rc = main(['view', {str(sample_dir / 's.svs')!r}, '--snapshot', "
        f"{str(tmp_path / 'a.png')!r}, '--width', '64']); "
        "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'textual', 'textual_image'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []"


def test_cells_for_another_slide_warn_with_a_count(sample_dir, tmp_path, capsys):
    ring = [[9000, 9000], [9010, 9000], [9010, 9010], [9000, 9010], [9000, 9000]]
    feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
               "properties": {"objectType": "detection"}}  # fmt: skip
    cells = tmp_path / "other.geojson"
    cells.write_text(json.dumps({"type": "FeatureCollection", "features": [feature, feature]}))
    rc = main(["view", str(sample_dir / "s.svs"), "--cells", str(cells),
               "--snapshot", str(tmp_path / "o.png"), "--width", "64"])  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"wsitui view: warning: cells file '{cells}': 2 of 2 cells lie outside the "
                   "slide (4096x3072 px); is it for another slide?"]  # fmt: skip


BAD = {
    "slide missing": (["view", "{d}/nope.svs", "--snapshot", "{t}/a.png"], "does not exist"),
    "slide not an image": (["view", "{d}/cells.geojson", "--snapshot", "{t}/a.png"], "slide"),
    "bad region": (["view", "{d}/s.svs", "--snapshot", "{t}/a.png", "--region", "1,2,3"],
                   "is not X,Y,W,H"),
    "region off the slide": (["view", "{d}/s.svs", "--snapshot", "{t}/a.png", "--region",
                              "5000,0,10,10"], "lies outside the slide"),
    "width too big": (["view", "{d}/s.svs", "--snapshot", "{t}/a.png", "--width", "99999"],
                      "out of range"),
    "region without snapshot": (["view", "{d}/s.svs", "--region", "0,0,5,5"], "go with --snapshot"),
    "tissue as cells": (["view", "{d}/s.svs", "--cells", "{d}/tissue.geojson", "--snapshot",
                         "{t}/a.png"], "holds annotations"),
    "no slide for the screen": (["view", "{d}/nope.svs"], "does not exist"),
    "no cells file for the screen": (["view", "{d}/s.svs", "--cells", "{t}/no.geojson"],
                                     "cells file"),
    "cache size": (["view", "{d}/s.svs", "--cache-mb", "0"], "--cache-mb 0 is invalid"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line(sample_dir, tmp_path, capsys, case):
    argv, words = BAD[case]
    argv = [a.format(d=sample_dir, t=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wsitui view: ") and words in err
    assert not (tmp_path / "a.png").exists()
