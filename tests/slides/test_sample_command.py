"""`wsitui sample` end to end, and what it must never harm."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import openslide
import pytest

from wsitui.cli import main
from wsitui.slides.errors import SlideError
from wsitui.slides.reader import open_slide
from wsitui.slides.style import STYLES
from wsitui.slides.synthetic import writer as sample_mod
from wsitui.slides.synthetic.generator import SamplePlan
from wsitui.slides.synthetic.truth import load_truth, truth_path_for
from wsitui.slides.synthetic.writer import is_sample_slide, write_sample_slide

SMALL = (1024, 1024)


def sample(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["sample", *args])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("wsitui sample: ")
    return lines[0]


def test_the_command_writes_an_aperio_slide_and_its_truth(tmp_path: Path, capsys):
    out = tmp_path / "demo.svs"
    code, stdout, err = sample(capsys, str(out), "--size", "1024x2048", "--seed", "5")
    assert code == 0 and err == ""
    said = json.loads(stdout)
    assert said == {
        "slide": str(out),
        "size": [1024, 2048],
        "seed": 5,
        "truth": str(truth_path_for(out)),
    }
    osr = openslide.OpenSlide(out)
    try:
        assert osr.properties["openslide.vendor"] == "aperio"
        assert osr.dimensions == (1024, 2048)
    finally:
        osr.close()
    truth = load_truth(out)
    assert (truth.width, truth.height, truth.seed, truth.slide) == (1024, 2048, 5, "demo.svs")
    plan = SamplePlan(1024, 2048, 5)
    np.testing.assert_array_equal(truth.tissue, plan.truth_tissue)
    want, _, _ = plan.nuclei_in_cells(0, plan.cells_x, 0, plan.cells_y)
    assert len(truth.nuclei) == len(want) > 50
    # The pixels are the plan's (up to JPEG): tissue where the truth says.
    with open_slide(out) as r:
        grey = r.read_level(1).astype(float).mean(axis=2)
    ds = truth.tissue_downsample / 4  # level 1 px per truth cell
    tissue = np.repeat(np.repeat(truth.tissue, ds, 0), ds, 1)[: grey.shape[0], : grey.shape[1]]
    assert grey[tissue].mean() < grey[~tissue].mean() - 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.svs", "demo.truth.npz"]


def test_a_generated_sample_is_replaced_without_force(tmp_path: Path, capsys):
    out = tmp_path / "s.svs"
    assert sample(capsys, str(out), "--size", "1024x1024", "--seed", "1")[0] == 0
    assert is_sample_slide(out)
    assert sample(capsys, str(out), "--size", "1024x1024", "--seed", "2")[0] == 0
    assert load_truth(out).seed == 2


@pytest.mark.parametrize("which", ["slide", "truth"])
def test_a_users_file_is_never_overwritten_without_force(which: str, tmp_path: Path, capsys):
    out = tmp_path / "mine.svs"
    target = out if which == "slide" else truth_path_for(out)
    target.write_bytes(b"a user's precious file")
    code, stdout, err = sample(capsys, str(out), "--size", "1024x1024")
    assert code == 2 and stdout == ""
    line = one_error_line(err)
    assert f"'{target}' already exists and was not made by wsitui sample" in line
    assert "--force" in line
    assert target.read_bytes() == b"a user's precious file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # nothing else written
    code, _, _ = sample(capsys, str(out), "--size", "1024x1024", "--force")
    assert code == 0 and load_truth(out).slide == "mine.svs"


def test_a_truth_file_of_another_slide_is_not_taken(tmp_path: Path):
    # x.svs and x.tif share the sidecar name x.truth.npz: it belongs to x.tif while that exists.
    write_sample_slide(tmp_path / "x.tif", size=SMALL, seed=1)
    with pytest.raises(SlideError, match=r"x\.truth\.npz' already exists and was not made by"):
        write_sample_slide(tmp_path / "x.svs", size=SMALL, seed=2)
    assert load_truth(tmp_path / "x.tif").seed == 1
    (tmp_path / "x.tif").unlink()  # its slide is gone: the sidecar is an orphan of ours
    write_sample_slide(tmp_path / "x.svs", size=SMALL, seed=2)
    assert load_truth(tmp_path / "x.svs").slide == "x.svs"


@pytest.mark.parametrize("name", ["x.txt", "x.png", "x.jpg", "x", "x.svs.gz", "x.truth.npz"])
def test_a_name_other_tools_would_misread_is_refused(name: str, tmp_path: Path, capsys):
    # `wsitui sample x.png` wrote an Aperio SVS called x.png: image viewers, and the TUI's own
    # file browser, took it for something else.
    code, stdout, err = sample(capsys, str(tmp_path / name), "--size", "1024x1024")
    assert code == 2 and stdout == ""
    line = one_error_line(err)
    assert f"cannot write '{tmp_path / name}'" in line and ".svs, .tif or .tiff" in line
    assert list(tmp_path.iterdir()) == []
    # ... also where the name is checked before its directory, and through the API.
    with pytest.raises(SlideError, match=r"give it a \.svs, \.tif or \.tiff name"):
        write_sample_slide(tmp_path / "no_such_dir" / name, size=SMALL, seed=1)


@pytest.mark.parametrize("name", ["x.svs", "x.SVS", "x.tif", "x.TIFF"])
def test_svs_and_tiff_names_are_written_and_open_as_aperio(name: str, tmp_path: Path, capsys):
    code, _, _ = sample(capsys, str(tmp_path / name), "--size", "1024x1024")
    assert code == 0
    assert openslide.OpenSlide.detect_format(tmp_path / name) == "aperio"


def test_never_writes_into_a_device_even_with_force(capsys):
    before = Path("/dev/null").stat()
    code, _, err = sample(capsys, "/dev/null", "--size", "1024x1024", "--force")
    assert code == 2
    assert "cannot write '/dev/null'" in one_error_line(err)
    after = Path("/dev/null").stat()
    assert (after.st_mode, after.st_rdev, after.st_ino) == (
        before.st_mode,
        before.st_rdev,
        before.st_ino,
    )


def test_never_writes_into_a_fifo_or_through_a_link(tmp_path: Path, capsys):
    fifo = tmp_path / "pipe.svs"
    os.mkfifo(fifo)
    code, _, err = sample(capsys, str(fifo), "--size", "1024x1024", "--force")  # must not hang
    assert code == 2 and "is not a regular file" in one_error_line(err)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.svs"
    link.symlink_to(victim)
    code, _, err = sample(capsys, str(link), "--size", "1024x1024", "--force")
    assert code == 2 and "is a symbolic link" in one_error_line(err)
    assert victim.read_text() == "keep me" and link.is_symlink()


def test_an_oversized_sample_is_refused_in_one_line(tmp_path: Path, capsys):
    code, _, err = sample(capsys, str(tmp_path / "big.svs"), "--size", "200000x200000")
    line = one_error_line(err)
    assert code == 2 and "over the 1,600,000,000 px limit" in line and "smaller size" in line
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path: Path, monkeypatch):
    old = tmp_path / "s.svs"
    write_sample_slide(old, size=SMALL, seed=1)
    before = old.read_bytes()

    def broken(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sample_mod, "_write_svs", broken)
    with pytest.raises(SlideError, match=r"cannot write .*No space left on device; give a path"):
        write_sample_slide(old, size=SMALL, seed=2)
    assert old.read_bytes() == before and load_truth(old).seed == 1  # the old pair is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.svs", "s.truth.npz"]


@pytest.mark.parametrize("unnamed", [True, False], ids=["this_file_system", "partial_file"])
def test_a_disk_that_fills_while_writing_leaves_nothing_behind(
    tmp_path: Path, monkeypatch, unnamed: bool
):
    """On a full disk (a 600 KB tmpfs) the slide's last bytes were still buffered when the
    write failed; closing flushed them, failed again, and `.s.svs.<pid>.*.partial` was left."""
    from wsitui.slides import safe_write

    if not unnamed:  # a file system where O_TMPFILE cannot be linked (as that tmpfs here)
        monkeypatch.setattr(safe_write, "_unnamed_file", lambda *_a: None)
    real = sample_mod._write_svs

    def fills_up(out, *a, **k):  # type: ignore[no-untyped-def]
        out.write(b"II*\x00 buffered, not yet written")
        full = os.open("/dev/full", os.O_WRONLY)
        os.dup2(full, out.fileno())  # every write to the file from now on: ENOSPC
        os.close(full)
        return real(out, *a, **k)

    monkeypatch.setattr(sample_mod, "_write_svs", fills_up)
    with pytest.raises(SlideError, match=r"cannot write .*No space left on device; give a path"):
        write_sample_slide(tmp_path / "s.svs", size=SMALL, seed=2)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_sample_leaves_no_scratch_directory(tmp_path: Path):
    out = tmp_path / "k.svs"
    code = (
        "import sys; from pathlib import Path; "
        "from wsitui.slides.synthetic.writer import write_sample_slide;"
        "write_sample_slide(Path(sys.argv[1]), size=(4096, 4096), seed=1, "
        "progress=lambda d, t: print(d, flush=True))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # it is writing now
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = list(tmp_path.iterdir())
    assert not out.exists() and not any(p.is_dir() for p in left)
    assert all(p.name.startswith(".k.") and p.name.endswith(".partial") for p in left)
    # The next write of the same name clears what the killed one left.
    write_sample_slide(out, size=SMALL, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.svs", "k.truth.npz"]


def test_a_style_is_recorded_in_the_slide_and_its_truth(tmp_path: Path):
    out = tmp_path / "grainy.svs"
    write_sample_slide(out, size=SMALL, seed=1, style=STYLES["grainy"])
    truth = load_truth(out)
    assert truth.style == STYLES["grainy"]
    with open_slide(out) as r:
        assert "|Style = grainy" in r.properties["tiff.ImageDescription"]
        assert "Q=70" in r.properties["tiff.ImageDescription"]
    # Same seed, other look: the same tissue and nuclei positions are not required, but the
    # tissue truth is: the look does not move the tissue.
    plain = write_sample_slide(tmp_path / "plain.svs", size=SMALL, seed=1)
    np.testing.assert_array_equal(load_truth(plain.path).tissue, truth.tissue)


def test_a_big_level_1_goes_through_an_unnamed_file_with_the_same_result(
    tmp_path: Path, monkeypatch
):
    a = write_sample_slide(tmp_path / "a.svs", size=SMALL, seed=4)
    monkeypatch.setattr(sample_mod, "LEVEL1_IN_MEMORY_BYTES", 1024)  # force the file-backed path
    b = write_sample_slide(tmp_path / "b.svs", size=SMALL, seed=4)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.svs",
        "a.truth.npz",
        "b.svs",
        "b.truth.npz",
    ]


def test_truth_files_of_the_previous_version_still_load_and_may_be_replaced(tmp_path: Path):
    out = tmp_path / "old.svs"
    write_sample_slide(out, size=SMALL, seed=1)
    truth = truth_path_for(out)
    with np.load(truth) as z:  # rewrite it as version 1 wrote it: no generator/slide/style
        v1 = {k: z[k] for k in z.files if k not in ("generator", "slide", "style")}
    v1["version"] = np.array(1)
    with truth.open("wb") as f:
        np.savez_compressed(f, **v1)
    old = load_truth(out)
    assert old.slide is None and old.style == STYLES["default"] and old.seed == 1
    write_sample_slide(out, size=SMALL, seed=2)  # ours: replaced without force
    assert load_truth(out).seed == 2


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_sample_where_nothing_can_be_written_says_what_to_do():
    # `[[samples]] path = "/proc/x.svs"` said only "No such file or directory", with no fix.
    with pytest.raises(SlideError, match=r"cannot write '/proc/x.svs': .*; give a path in a"):
        write_sample_slide(Path("/proc/x.svs"), size=SMALL, seed=1)
