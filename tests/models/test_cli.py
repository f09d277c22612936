"""`wsitui model list | train | eval` through `add_model_commands` / `run_model_command`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models.conftest import FakeFactory
from wsitui.models.cli import _check_out_folder, add_model_commands, run_model_command
from wsitui.models.errors import ModelError


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="wsitui")
    add_model_commands(p.add_subparsers(dest="command"))
    return run_model_command(p.parse_args(argv))


def test_list_shows_shipped_cached_and_configured(
    tmp_path: Path, model_dir: Path, fake_model: FakeFactory, capsys: pytest.CaptureFixture[str]
):
    fake_model(model_dir / "brightfield_nuclei" / "0.1.1" / "instanseg.pt", pixel_size=0.5)
    fake_model(tmp_path / "local" / "instanseg.pt", pixel_size=0.25)
    config = tmp_path / "c.toml"
    config.write_text(
        '[[workflows]]\ntenant = "a"\nname = "w"\n'
        '[[workflows.jobs]]\nid = "j1"\ntype = "TISSUE_MASK"\nslide = "s.svs"\n'
        'params = { model = "local" }\n'
        '[[workflows.jobs]]\nid = "j2"\ntype = "TISSUE_MASK"\nslide = "s.svs"\n'
        'params = { model = "nowhere.pt" }\n'
    )
    assert run(["model", "list", "--config", str(config), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cache_dir"] == str(model_dir)
    rows = {(m["origin"], m["name"]): m for m in out["models"]}
    shipped = rows[("shipped", "wsitui_he_nuclei")]
    assert (shipped["pixel_size"], shipped["channels"], shipped["problem"]) == (0.5, 3, "")
    assert rows[("built-in", "classical")]["kind"] == "classical"
    cached = rows[("cached", "brightfield_nuclei")]
    assert (cached["version"], cached["pixel_size"]) == ("0.1.1", 0.5)
    local = rows[("configured", "local")]
    assert (local["kind"], local["pixel_size"]) == ("folder", 0.25)
    # (the config loader may already have made the relative path absolute)
    nowhere = [m for (o, n), m in rows.items() if o == "configured" and n.endswith("nowhere.pt")]
    assert len(nowhere) == 1 and "does not exist" in nowhere[0]["problem"]
    assert run(["model", "list"]) == 0
    text = capsys.readouterr().out
    assert "wsitui_he_nuclei" in text and "brightfield_nuclei" in text


def test_eval_of_a_bad_model_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]):
    assert run(["model", "eval", "no_such_model"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wsitui model: model 'no_such_model' is unknown") and "\n" not in err


def test_eval_classical_prints_f1(capsys: pytest.CaptureFixture[str]):
    assert run(["model", "eval", "classical", "--images", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["name"] == "classical" and 0.5 < out["f1"] <= 1.0


def test_eval_says_the_shipped_model_runs_with_its_check_and_fill(
    capsys: pytest.CaptureFixture[str],
):
    pytest.importorskip("torch")
    argv = ["model", "eval", "shipped", "--looks", "default", "--no-baseline"]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert (
        "wsitui_he_nuclei: as a job runs it: nuclear check on, classical fill on "
        "(fill-2+classical-8)" in out
    )


def test_train_smoke_writes_a_loadable_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """CI never trains for real: 3 steps on 4 small patches, then the export loads."""
    pytest.importorskip("edt")
    out = tmp_path / "m"
    argv = [
        "model",
        "train",
        "--out",
        str(out),
        "--steps",
        "3",
        "--pool",
        "4",
        "--patch",
        "64",
        "--tune-images",
        "1",
    ]
    assert run(argv) == 0
    assert "saved" in capsys.readouterr().out
    from wsitui.models.loaded import load
    from wsitui.models.source import resolve

    model = load(resolve(str(out)), "cpu")
    assert (model.pixel_size, model.channels, model.source_kind) == (0.5, 3, "folder")
    info = json.loads((out / "wsitui_model.json").read_text())
    assert info["classical_fill"] is True  # the model layer completes its labels with it
    assert info["train"]["steps"] == 3 and info["train"]["seed"] == 0
    assert info["normalization"] == "fixed" and model.manifest()["normalization"] == "fixed"
    assert (out / "instanseg.pt").stat().st_size < 1_000_000


def test_train_warm_starts_from_an_exported_model(tmp_path: Path):
    """--init loads the shipped model's weights (so a retrain can start from them) and the
    record names the file it started from."""
    pytest.importorskip("edt")
    import hashlib

    import torch

    from wsitui.models.source import SHIPPED_DIR

    out = tmp_path / "m"
    argv = ["model", "train", "--out", str(out), "--steps", "1", "--pool", "2", "--patch", "64"]
    assert run([*argv, "--init", str(SHIPPED_DIR), "--lr", "1e-9"]) == 0
    dense = tmp_path / "d"
    mix = ["--dense", "0.5", "--specks", "0.5", "--dark-nests", "0.25"]
    assert run([*argv[:3], str(dense), *argv[4:], *mix]) == 0
    record = json.loads((dense / "wsitui_model.json").read_text())["train"]
    assert (record["dense"], record["specks"], record["dark_nests"]) == (0.5, 0.5, 0.25)
    info = json.loads((out / "wsitui_model.json").read_text())
    from dataclasses import fields

    from wsitui.models.train import TrainConfig

    trainer = {f.name: f.default for f in fields(TrainConfig)}["dense"]
    assert info["train"]["dense"] == trainer  # the CLI's default is the trainer's
    shipped_pt = SHIPPED_DIR / "instanseg.pt"
    assert info["init_sha256"] == hashlib.sha256(shipped_pt.read_bytes()).hexdigest()
    assert info["train"]["init"] == str(SHIPPED_DIR)
    start = torch.jit.load(str(shipped_pt), map_location="cpu").state_dict()
    got = torch.jit.load(str(out / "instanseg.pt"), map_location="cpu").state_dict()
    convs = [k for k in start if k.endswith(".weight") and start[k].ndim == 4]
    assert len(convs) > 10
    for k in convs:  # one step at a negligible learning rate: the shipped weights
        assert torch.allclose(start[k], got[k], atol=1e-5), k


def test_train_init_that_is_missing_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("edt")
    argv = ["model", "train", "--out", str(tmp_path / "m"), "--steps", "1", "--pool", "2"]
    assert run([*argv, "--patch", "64", "--init", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--init" in err and "does not exist" in err and "\n" not in err


def test_bad_train_args_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert run(["model", "train", "--out", str(tmp_path), "--steps", "0"]) == 2
    assert "--steps, --batch, --pool and --threads must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("under", [False, True], ids=["file", "under_a_file"])
def test_train_out_that_is_a_file_is_refused_before_training(tmp_path: Path, under: bool):
    """`--out notes.txt` trained for the whole run, then hit FileExistsError (exit 70)."""
    from tests.headless.helpers import assert_one_line_error, wsitui

    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    out_dir = notes / "m" if under else notes
    out = wsitui("model", "train", "--out", out_dir, "--steps", "1", timeout=60)
    line = assert_one_line_error(out, 2, f"wsitui model: train: --out {out_dir}", "give a folder")
    assert ("which is a file" if under else "is a file") in line
    assert notes.read_text() == "mine\n"


def test_importing_the_model_cli_loads_no_torch():
    code = (
        "import sys, wsitui.models, wsitui.models.cli, wsitui.models.source; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'instanseg', 'skimage')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _no_heavy_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad arguments must be refused before training or model loading starts."""
    import wsitui.models.loaded
    import wsitui.models.train

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("started work on a bad argument")

    monkeypatch.setattr(wsitui.models.train, "train", boom)
    monkeypatch.setattr(wsitui.models.loaded, "load", boom)


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        (["--negatives", "2"], "--negatives 2 is a share: give a value from 0 to 1"),
        (["--dark-nests", "-0.5"], "--dark-nests -0.5 is a share"),
        (["--lr", "-1"], "--lr -1 must be above 0"),
        (["--lr", "nan"], "--lr nan must be above 0"),
        (["--tune-images", "-3"], "--tune-images must be 0"),
        (["--init", "NOPE"], "does not exist: give an exported instanseg.pt"),
    ],
    ids=["share_over_1", "share_negative", "lr_negative", "lr_nan", "tune_negative", "init"],
)
def test_bad_train_values_are_refused_before_data_generation(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    want: str,
):
    """Before: --negatives 2 was clamped to 1 (every look without nuclei) and trained; --lr -1
    ended in torch's ValueError traceback after 80 s of data; a missing --init was found only
    after the data was generated."""
    _no_heavy_work(monkeypatch)
    extra = [str(tmp_path / "nope") if x == "NOPE" else x for x in extra]
    out = tmp_path / "m"
    assert run(["model", "train", "--out", str(out), "--steps", "1", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wsitui model: train: ") and want in err and "\n" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        (["--images", "0"], "--images must be 1-1000"),
        (["--images", "5", "--looks", "nosuch"], "look 'nosuch' is unknown"),
        (["--looks", ",,"], "look '' is unknown"),
        (["--looks", "dense20"], "look 'dense20' is unknown; use default, grainy"),
    ],
    ids=["images_0", "bad_look_with_images", "empty_looks", "dense_past_the_last"],
)
def test_bad_eval_values_are_refused_before_the_model_loads(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    want: str,
):
    """Before: `--images 0` ran the whole-slide eval of every look (0 read as 'not given');
    `--looks nosuch --images 5` printed an F1 without a word about the look."""
    _no_heavy_work(monkeypatch)
    assert run(["model", "eval", "classical", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wsitui model: eval: ") and want in err and "\n" not in err


def test_eval_scores_a_look_named_twice_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """Before: `--looks default,default` scored the look twice and pooled it twice."""
    import wsitui.models.evaluate as ev

    seen: list[list[str]] = []

    def fake(model: object, looks: list[str], seeds: object, size: object) -> list[object]:
        seen.append(list(looks))
        raise KeyboardInterrupt  # stop here: only the looks handed over matter

    monkeypatch.setattr(ev, "evaluate_slides", fake)
    run(["model", "eval", "classical", "--looks", "default,default,pale", "--no-baseline"])
    assert seen == [["default", "pale"]]
    run(["model", "eval", "classical", "--looks", "dense0,dense3", "--no-baseline"])
    assert seen[-1] == ["dense0", "dense3"], "the dense looks are eval's too"


def test_eval_prints_faint_nuclei_and_the_recall_on_the_rest(capsys: pytest.CaptureFixture[str]):
    size = ["--looks", "dense2", "--no-baseline"]
    assert run(["model", "eval", "classical", *size]) == 0
    out = capsys.readouterr().out
    head = next(line for line in out.splitlines() if line.startswith("look"))
    assert head.split()[-3:] == ["faint", "vis", "R"]
    assert "faint: true nuclei under 0.01 OD" in out
    assert run(["model", "eval", "classical", *size, "--json"]) == 0
    look = json.loads(capsys.readouterr().out)["models"]["classical"]["looks"][0]
    assert look["look"] == "dense2" and {"faint", "faint_found", "visible_recall"} <= set(look)


@pytest.mark.parametrize("flag", ["--out", "--init"])
def test_an_empty_train_path_is_refused_not_the_current_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: str,
):
    """Before: `--out "$DIR"` with DIR unset trained for minutes and wrote instanseg.pt and
    wsitui_model.json into the folder the shell stood in."""
    _no_heavy_work(monkeypatch)
    monkeypatch.chdir(tmp_path)
    argv = ["model", "train", "--out", str(tmp_path / "m"), "--steps", "1", flag, ""]
    with pytest.raises(SystemExit) as exc:
        run(argv)
    assert exc.value.code == 2
    assert "the path is empty (an unset shell variable?)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["model", "list", "--model-dir", ""],
        ["model", "list", "--config", " "],
        ["model", "eval", "classical", "--model-dir", ""],
    ],
    ids=["list_model_dir", "list_config", "eval_model_dir"],
)
def test_an_empty_model_path_is_refused_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
):
    """Before: `--model-dir "$DIR"` with DIR unset quietly meant the default cache (so a user
    listed or evaluated models from somewhere they did not name); `--config ""` was '.'."""
    from wsitui.cli import main

    _no_heavy_work(monkeypatch)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert "the path is empty (an unset shell variable?)" in captured.err


@pytest.mark.parametrize("model", ["classical", "shipped"])
@pytest.mark.parametrize("device", ["tpu", "cuda:x", ""])
def test_a_device_that_is_no_device_is_refused_whatever_the_model(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    model: str,
    device: str,
):
    """Before: `model eval classical --device tpu` scored and said nothing of the device, while
    the same with a torch model was refused."""
    _no_heavy_work(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        run(["model", "eval", model, "--images", "1", "--device", device])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --device: device {device!r} is not one of auto, cpu, cuda" in err


@pytest.mark.parametrize("inside", [False, True], ids=["folder", "new_folder_in_it"])
def test_train_out_that_cannot_be_written_is_refused_before_training(tmp_path: Path, inside: bool):
    """A read-only --out trained for the whole run (minutes to an hour) and failed only when
    the model was saved."""
    import os
    import shutil

    from tests.headless.helpers import assert_one_line_error, wsitui

    locked = tmp_path / "locked"
    locked.mkdir()
    out_dir = locked / "m" if inside else locked
    if os.geteuid() != 0:
        locked.chmod(0o555)
    else:
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", str(locked)]).returncode != 0:
            pytest.skip("root without a working chattr: cannot make a folder read-only")
    try:
        out = wsitui("model", "train", "--out", out_dir, "--steps", "1", timeout=60)
    finally:
        if os.geteuid() != 0:
            locked.chmod(0o755)
        else:
            subprocess.run(["chattr", "-i", str(locked)], check=True)
    line = assert_one_line_error(
        out, 2, f"wsitui model: train: --out {out_dir}", "give a folder you can write to"
    )
    assert ("(its folder" in line) is inside
    assert list(locked.iterdir()) == []


def test_eval_of_a_model_path_that_does_not_exist_says_relative_to_what(tmp_path: Path):
    """It said "(relative paths are relative to the config file)" on the command line, where
    no config is read: relative to the current folder."""
    from tests.headless.helpers import assert_one_line_error, wsitui

    out = wsitui("model", "eval", "gone/model.pt", "--images", "1", cwd=tmp_path, timeout=60)
    assert_one_line_error(
        out,
        2,
        f"model path {tmp_path.resolve()}/gone/model.pt does not exist (relative paths are "
        "relative to the current folder); check the path",
    )


@pytest.mark.parametrize("content", [b"not a model", b"PK\x03\x04 cut short"], ids=["text", "cut"])
def test_train_init_that_is_no_torchscript_is_refused_before_training(
    tmp_path: Path, content: bytes
):
    """`--init notes.pt` generated the training data for minutes, then failed."""
    from tests.headless.helpers import assert_one_line_error, wsitui

    init = tmp_path / "init.pt"
    init.write_bytes(content)
    out = wsitui(
        "model", "train", "--out", tmp_path / "m", "--init", init, "--steps", "1", timeout=60
    )
    assert_one_line_error(
        out, 2, f"wsitui model: train: --init: model {init} is not a TorchScript file"
    )
    assert not (tmp_path / "m").exists()


def test_a_model_cache_that_is_a_file_is_one_line_not_an_internal_error(tmp_path: Path):
    """`--model-dir notes.txt` with a pretrained name ended in NotADirectoryError (exit 70)."""
    from tests.headless.helpers import assert_one_line_error, wsitui

    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    out = wsitui(
        "model", "eval", "--model-dir", notes, "brightfield_nuclei", "--images", "1", timeout=60
    )
    assert_one_line_error(
        out,
        2,
        f"wsitui model: model cache {notes} cannot take a download (Not a directory); give a "
        "folder you can write to with --model-dir or $WSITUI_MODEL_DIR",
    )
    assert notes.read_text() == "mine\n"


@pytest.mark.parametrize("target", ["gone", "self"], ids=["dangling", "loop"])
def test_train_out_that_is_a_broken_link_is_called_one(tmp_path: Path, target: str):
    """`--out` a dangling or looping symlink was refused as "is a file"."""
    link = tmp_path / "self"
    link.symlink_to(target)
    with pytest.raises(ModelError, match=r"is a broken symbolic link; give a folder"):
        _check_out_folder(link)
    with pytest.raises(ModelError, match=r"which is a broken symbolic link; give a folder"):
        _check_out_folder(link / "m")
