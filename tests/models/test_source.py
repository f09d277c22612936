"""Which model a job uses: every `model` value resolved offline, with the messages asserted."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from wsitui.models import source as src
from wsitui.models.errors import ModelError
from wsitui.models.source import ModelRef, cache_dir, resolve


def test_cache_dir_option_then_env_then_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("WSITUI_MODEL_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "wsitui" / "models"
    monkeypatch.setenv("WSITUI_MODEL_DIR", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "opt") == tmp_path / "opt"


def test_default_is_the_classical_fallback_when_nothing_is_cached(model_dir: Path):
    # The shipped model is not the default until it is sane on real H&E (issue #24, README).
    s = resolve(None, None)
    assert (s.kind, s.name, s.fallback_reason) == ("classical", "classical", "")
    assert resolve("shipped").path.is_file()


def test_default_is_the_cached_pretrained_model(model_dir: Path):
    cached = model_dir / "brightfield_nuclei" / "0.1.1" / "instanseg.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert resolve(None, None).kind == "classical"  # not downloaded by wsitui: no record
    cached.with_name("instanseg.pt.sha256").write_text("0" * 64)
    s = resolve(None, None)
    assert (s.kind, s.name, s.path, s.version) == (
        "pretrained",
        "brightfield_nuclei",
        cached,
        "0.1.1",
    )


def test_pretrained_name_points_into_the_cache(model_dir: Path):
    s = resolve("fluorescence_nuclei_and_cells", None)
    assert s.kind == "pretrained"
    assert s.path == model_dir / "fluorescence_nuclei_and_cells" / "0.1.1" / "instanseg.pt"


def test_named_shipped_and_classical():
    assert resolve("shipped").kind == "shipped"
    assert resolve("wsitui_he_nuclei").kind == "shipped"
    c = resolve("classical")
    assert (c.kind, c.path, c.fallback_reason) == ("classical", None, "")


def test_folder_and_file_relative_to_the_config_dir(tmp_path: Path):
    folder = tmp_path / "models" / "mine"
    folder.mkdir(parents=True)
    (folder / "instanseg.pt").write_bytes(b"x")
    (tmp_path / "other.pt").write_bytes(b"x")
    f = resolve("models/mine", tmp_path)
    assert (f.kind, f.name, f.path) == ("folder", "mine", (folder / "instanseg.pt").resolve())
    g = resolve("other.pt", tmp_path)
    assert (g.kind, g.path) == ("file", (tmp_path / "other.pt").resolve())
    assert resolve(str(tmp_path / "other.pt")).kind == "file"


@pytest.mark.parametrize(
    ("value", "is_path"),
    [
        ("models/mine", True),
        ("..\\models\\mine", True),  # a Windows path: the TUI took it for a name
        ("mine.pt", True),
        ("./mine", True),
        ("~mine", True),  # resolve took it for a name; the TUI and the config for a path
        ("brightfield_nuclei", False),
        ("shipped", False),
    ],
)
def test_the_config_the_tui_and_resolve_agree_on_what_is_a_path(value: str, is_path: bool):
    assert src.looks_like_path(value) is is_path


def test_a_name_in_the_cache_outside_instansegs_index(model_dir: Path):
    (model_dir / "my_model").mkdir(parents=True)
    (model_dir / "my_model" / "instanseg.pt").write_bytes(b"x")
    s = resolve("my_model")
    assert (s.kind, s.path) == ("folder", model_dir / "my_model" / "instanseg.pt")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no_such_model", "model 'no_such_model' is unknown: use one of brightfield_nuclei"),
        ("missing/dir", "does not exist (relative paths are relative to the config file)"),
        ("gone.pt", "does not exist"),
        ("empty", "holds no instanseg.pt"),
    ],
)
def test_unusable_values_are_one_line_errors(tmp_path: Path, model_dir: Path, value, message):
    (tmp_path / "empty").mkdir()
    value = "./empty" if value == "empty" else value
    with pytest.raises(ModelError) as err:
        resolve(value, tmp_path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_without_torch_the_default_falls_back_to_classical_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(src, "torch_available", lambda: False)
    s = resolve(None)
    assert s.kind == "classical"
    assert "torch or instanseg-torch is not installed" in s.fallback_reason
    with pytest.raises(ModelError, match=r"needs torch and instanseg-torch.*model = 'classical'"):
        resolve("brightfield_nuclei")
    assert resolve("classical").fallback_reason == ""


def test_model_ref_validates_device_and_model():
    assert ModelRef().model_dump() == {"model": None, "device": "auto"}
    assert ModelRef(model=" shipped ", device="cuda:1").model == "shipped"
    with pytest.raises(
        ValidationError, match="device 'gpu' is not one of auto, cpu, cuda, cuda:N, mps"
    ):
        ModelRef(device="gpu")
    with pytest.raises(ValidationError, match="model must be"):
        ModelRef(model="  ")
    with pytest.raises(ValidationError):
        ModelRef(model="x", colour="red")  # type: ignore[call-arg]
