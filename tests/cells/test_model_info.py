"""What a client plans a cluster job with, read from the model file without loading it."""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from wsitui.core.digest import sha256_file
from wsitui.jobs.segment_cells.model_info import describe, module_state, pixel_size
from wsitui.models.errors import ModelError
from wsitui.models.source import ModelSource, classical_source, shipped_source

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_models_pixel_size_and_hash_are_read_without_torch() -> None:
    code = (
        "import sys\n"
        "from wsitui.jobs.segment_cells.model_info import describe\n"
        "from wsitui.models.source import shipped_source\n"
        "m = describe(shipped_source(), 'cuda')\n"
        "print(m.pixel_size, m.sha256, m.info['default_window_size'], 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    ).stdout.split()
    assert out == ["0.5", sha256_file(shipped_source().path), "32", "False"]


def test_the_classical_model_needs_no_file() -> None:
    info = describe(classical_source(), "cpu")
    assert info.is_classical and info.pixel_size == 0.5


def _archive(tmp_path: Path, payload: bytes) -> Path:
    path = tmp_path / "m.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/data.pkl", payload)
    return path


class Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("ran",))


def test_an_archive_that_would_run_code_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    path = _archive(tmp_path, pickle.dumps(Evil()))
    with pytest.raises(ModelError) as e:
        describe(ModelSource("file", "m.pt", path), "cpu")
    assert "not a TorchScript file" in str(e.value) and "\n" not in str(e.value)
    assert "ran" not in capsys.readouterr().out


def test_a_model_without_pixel_size_or_not_an_archive_says_so(tmp_path: Path) -> None:
    assert module_state(_archive(tmp_path, pickle.dumps(3)).read_bytes(), "m") == {}
    with pytest.raises(ModelError, match="has no pixel_size"):
        pixel_size({}, "m")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a TorchScript file"):
        describe(ModelSource("file", "bad.pt", bad), "cpu")
    missing = ModelSource("file", "gone.pt", tmp_path / "gone.pt")
    with pytest.raises(ModelError, match="not on this machine"):
        describe(missing, "cpu")
