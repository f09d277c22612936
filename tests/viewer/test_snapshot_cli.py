"""`wsitui view --snapshot`: the PNG is the composed view; bad input is one line, exit 2."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from wsitui.cli import main
from wsitui.viewer.compose import Layers
from wsitui.viewer.snapshot import load_compositor, snapshot_frame
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
    "width zero": (["view", "{d}/s.svs", "--snapshot", "{t}/a.png", "--width", "0"],
                   "width 0 px is out of range"),  # was drawn 1280 px wide
    "region without snapshot": (["view", "{d}/s.svs", "--region", "0,0,5,5"], "go with --snapshot"),
    "tissue as cells": (["view", "{d}/s.svs", "--cells", "{d}/tissue.geojson", "--snapshot",
                         "{t}/a.png"], "holds annotations"),
    # was drawn: every nucleus outlined as tissue, without a word
    "cells as tissue": (["view", "{d}/s.svs", "--tissue", "{d}/cells.geojson", "--snapshot",
                         "{t}/a.png"], "holds cells (detections), not tissue; give it as --cells"),
    "no slide for the screen": (["view", "{d}/nope.svs"], "does not exist"),
    "no cells file for the screen": (["view", "{d}/s.svs", "--cells", "{t}/no.geojson"],
                                     "cells file"),
    "cache size": (["view", "{d}/s.svs", "--cache-mb", "0"], "--cache-mb 0 is invalid"),
    # hostile2: each of these was a traceback, a cryptic line or a hang
    "cache nan": (["view", "{d}/s.svs", "--cache-mb", "nan"], "--cache-mb nan is invalid"),
    "cache inf": (["view", "{d}/s.svs", "--snapshot", "{t}/a.png", "--cache-mb", "inf"],
                  "--cache-mb inf is invalid"),
    "region nan": (["view", "{d}/s.svs", "--snapshot", "{t}/a.png", "--region", "nan,0,10,10"],
                   "is not X,Y,W,H"),
    "region inf": (["view", "{d}/s.svs", "--snapshot", "{t}/a.png", "--region", "0,0,inf,inf"],
                   "is not X,Y,W,H"),
    "region huge": (["view", "{d}/s.svs", "--snapshot", "{t}/a.png", "--region",
                     "0,0,1e300,1e308"], "out of range"),
    "region a sliver": (["view", "{d}/s.svs", "--snapshot", "{t}/a.png", "--region",
                         "0,0,1,10000"], "would be 1x10,000 px"),
    "snapshot not a png": (["view", "{d}/s.svs", "--snapshot", "{t}/a.svs"], "a .png file"),
    "snapshot no suffix": (["view", "{d}/s.svs", "--snapshot", "{t}/a"], "a .png file"),
    "snapshot a directory": (["view", "{d}/s.svs", "--snapshot", "{t}"], "is a directory"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line(sample_dir, tmp_path, capsys, case):
    argv, words = BAD[case]
    argv = [a.format(d=sample_dir, t=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wsitui view: ") and words in err
    assert not (tmp_path / "a.png").exists()


def test_a_snapshot_never_overwrites_the_slide_it_shows(tmp_path, capsys):
    """`wsitui view scan.png --snapshot scan.png` wrote the view over the user's image."""
    slide = tmp_path / "scan.png"
    Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(slide)
    before = slide.read_bytes()
    assert main(["view", str(slide), "--snapshot", str(slide), "--width", "64"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the slide itself" in err, err
    assert slide.read_bytes() == before


def test_a_failed_snapshot_leaves_an_earlier_one_whole(sample_dir, tmp_path, monkeypatch, capsys):
    """The PNG is written beside and renamed over: a write that fails (disk full) leaves the
    earlier picture as it was, not a truncated one, and no temporary file."""
    out = tmp_path / "view.png"
    args = ["view", str(sample_dir / "s.svs"), "--snapshot", str(out), "--width", "64"]
    assert main(args) == 0
    before = out.read_bytes()

    def full(self, fp, *a, **k):  # type: ignore[no-untyped-def]
        fp.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    assert main([*args, "--width", "32"]) == 2
    err = capsys.readouterr().err  # it was "wsitui view: [Errno 28] No space left on device"
    assert err == (
        f"wsitui view: snapshot '{out}' cannot be written (No space left on device); check that "
        "its folder is a folder you can write to and its disk has room, or give another path\n"
    )
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.png"]


def test_the_screen_without_a_terminal_is_one_line_not_a_hang(sample_dir):
    """From a script or cron (stdin not a terminal) the viewer drew escape codes into the pipe
    and waited for keys forever. It says so in one line, exit 2, and names --snapshot."""
    out = subprocess.run(
        [sys.executable, "-m", "wsitui.cli", "view", str(sample_dir / "s.svs")],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-500:]
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "needs a terminal" in lines[0] and "--snapshot" in lines[0], lines
    assert "\x1b" not in out.stdout + out.stderr


@pytest.mark.parametrize("kind", ["fifo", "nested 100,000 deep", "directory"])
def test_an_overlay_that_is_no_geojson_file_is_one_line_not_a_hang(sample_dir, tmp_path, kind):
    """`--cells` on a FIFO waited forever for a writer; arrays nested 100,000 deep ended in a
    RecursionError traceback. Both are one line, exit 2, and nothing is written."""
    import os

    bad = tmp_path / "cells.geojson"
    if kind == "fifo":
        os.mkfifo(bad)
    elif kind == "directory":
        bad.mkdir()
    else:
        bad.write_text("[" * 100_000)
    out = tmp_path / "a.png"
    args = ["view", str(sample_dir / "s.svs"), "--cells", str(bad), "--snapshot", str(out)]
    run = subprocess.run(  # a timeout: a regression hangs this test, not the whole run
        [sys.executable, "-m", "wsitui.cli", *args],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr[-500:]
    err = run.stderr
    assert err.count("\n") == 1 and err.startswith("wsitui view: cells file"), err
    assert not out.exists()


@pytest.mark.parametrize("region", ["0,0,1e6,1e6", "-5e6,-5e6,1e7,1e7", "0,0,1e30,1e30"])
def test_a_region_far_larger_than_the_slide_draws_it_small(sample_dir, tmp_path, capsys, region):
    """`--region 0,0,1e6,1e6` cropped the thumbnail's whole area first: a MemoryError asking
    for hundreds of GB (1e30: "Maximum allowed dimension exceeded"). The slide is drawn where
    it lies, a few px, on background."""
    out = tmp_path / "snap.png"
    argv = ["view", str(sample_dir / "s.svs"), "--snapshot", str(out), f"--region={region}"]
    assert main(argv) == 0, capsys.readouterr().err
    assert np.asarray(Image.open(out)).shape[:2] == (1280, 1280)


def test_a_region_left_of_or_above_the_slide_is_taken_as_typed(sample_dir, tmp_path, capsys):
    """`--region -2048,-1536,8192,6144` (the slide in the middle of a view twice its size) was
    read by argparse as an option: "argument --region: expected one argument". It draws what
    `--region=-2048,...` draws; an option after it is still an option."""
    slide, typed, joined = str(sample_dir / "s.svs"), tmp_path / "typed.png", tmp_path / "j.png"
    region = "-2048,-1536,8192,6144"
    assert (
        main(["view", slide, "--snapshot", str(typed), "--region", region, "--width", "200"]) == 0
    )
    assert (
        main(["view", slide, "--snapshot", str(joined), f"--region={region}", "--width", "200"])
        == 0
    )
    capsys.readouterr()
    assert np.array_equal(np.asarray(Image.open(typed)), np.asarray(Image.open(joined)))
    assert np.asarray(Image.open(typed)).shape[:2] == (150, 200)
    with pytest.raises(SystemExit):  # a value is still needed: an option is not taken as one
        main(["view", slide, "--snapshot", str(typed), "--region", "--width", "200"])
    assert "--region: expected one argument" in capsys.readouterr().err


def test_drawing_only_the_slides_part_matches_cropping_the_whole_area(sample_dir, monkeypatch):
    from wsitui.viewer import compose

    comp, _ = load_compositor(sample_dir / "s.svs", None, None)
    region = (-4096.0, -3072.0, 16384.0, 12288.0)  # the slide in the middle of 4x its size
    try:
        cropped = snapshot_frame(comp, region, 800).rgb.astype(int)
        monkeypatch.setattr(compose, "CROP_LIMIT_PX", 0)  # every area takes the new path
        drawn = snapshot_frame(comp, region, 800).rgb.astype(int)
    finally:
        comp.source.close()
    diff = np.abs(cropped - drawn).max(axis=2)
    assert (diff > 8).mean() < 0.005  # the same picture but for the slide's edge pixels


def test_a_tall_slide_is_drawn_as_wide_as_lets_it_fit(tmp_path, capsys):
    """`wsitui view tall.png --snapshot v.png` of a 300 x 20,000 px image was refused ("the
    picture would be 300x20,000 px"), though a picture 122 px wide holds all of it; a 1 px wide
    sliver too tall for any picture was told to take "a narrower region" (taller still)."""
    tall = tmp_path / "tall.png"
    Image.fromarray(np.full((20000, 300, 3), 200, np.uint8)).save(tall)
    assert main(["view", str(tall), "--snapshot", str(tmp_path / "v.png")]) == 0
    with Image.open(tmp_path / "v.png") as im:
        assert im.width == 122 and 8100 <= im.height <= 8192
    capsys.readouterr()
    assert main(["view", str(tall), "--snapshot", str(tmp_path / "w.png"), "--width", "300"]) == 2
    assert "give a smaller --width" in capsys.readouterr().err
    sliver = tmp_path / "sliver.png"
    Image.fromarray(np.full((10000, 1, 3), 200, np.uint8)).save(sliver)
    assert main(["view", str(sliver), "--snapshot", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "would be 1x10,000 px" in err and "a shorter region" in err


def test_a_snapshot_gets_the_permissions_any_new_file_gets(sample_dir, tmp_path, capsys):
    """It was written with mkstemp and renamed: 0600, a picture no other user could open."""
    out = tmp_path / "view.png"
    umask = os.umask(0o022)
    try:
        assert (
            main(["view", str(sample_dir / "s.svs"), "--snapshot", str(out), "--width", "64"]) == 0
        )
    finally:
        os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.png"]


def test_a_snapshot_under_a_file_says_the_path_crosses_a_file(sample_dir, tmp_path, capsys):
    """It said "[Errno 17] File exists: '.../a.txt'"."""
    (tmp_path / "a.txt").write_text("x")
    out = tmp_path / "a.txt" / "sub" / "view.png"
    assert main(["view", str(sample_dir / "s.svs"), "--snapshot", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"wsitui view: snapshot '{out}' cannot be written: a part of its folder path is a file, "
        "not a folder; fix the path\n"
    )
