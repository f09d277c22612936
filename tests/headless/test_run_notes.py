"""`wsitui run`'s closing summary says the notes the jobs' manifests left (their `warnings`:
an assumed pixel size, an empty mask, a fallback model), each once with the jobs that left it:
the TUI's card counts them (`⚠ 2 notes`), and a user of the headless face saw none of them
before.

Every subprocess has a timeout (tests/headless/helpers.py): a hang fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.headless.helpers import one_job_config, write_config, wsitui
from tests.slides.foreign import Foreign, tissue_pixels, write_foreign


def test_the_summary_prints_each_note_once_naming_its_jobs(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
):
    slide = tmp_path / "plain.png"  # a plain image holds no pixel size: 0.5 µm/px is assumed
    Image.fromarray(tissue_pixels(tmp_path_factory)[:512, :768]).save(slide)
    config = one_job_config(tmp_path / "c.toml", slide)
    out = wsitui("run", config, "--data-dir", tmp_path / "data")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    (at,) = [i for i, line in enumerate(lines) if line.strip() == "notes:"]
    assert lines[at + 1].strip() == "⚠ slide has no pixel size; assumed 0.5 µm/px (a)", lines
    # Said by several jobs: once, naming them (`+N more` past four).
    body = "".join(
        f'  [[workflows.jobs]]\n  id = "m{i}"\n  type = "TISSUE_MASK"\n  slide = "{slide}"\n'
        for i in range(6)
    )
    config = write_config(
        tmp_path / "six.toml", f'[[workflows]]\ntenant = "t"\nname = "six"\n{body}'
    )
    out = wsitui("run", config, "--data-dir", tmp_path / "six")
    assert out.returncode == 0, out.stderr
    said = [line.strip() for line in out.stdout.splitlines() if "⚠" in line]
    assert said == ["⚠ slide has no pixel size; assumed 0.5 µm/px (m0, m1, m2, m3 +2 more)"]
    # The same tissue in a TIFF that gives its pixel size: no note under its output line.
    tiff = write_foreign(
        tmp_path / "x.tif",
        tissue_pixels(tmp_path_factory)[:512, :768],
        Foreign(aperio=None, compression="lzw", photometric="rgb", resolution=(0.499, "cm")),
    )
    out = wsitui("run", one_job_config(tmp_path / "d.toml", tiff), "--data-dir", tmp_path / "d")
    assert out.returncode == 0, out.stderr
    assert "a: t/" in out.stdout and "⚠" not in out.stdout, out.stdout


def test_a_default_cells_job_on_the_classical_model_leaves_no_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With no pretrained model cached the documented default is the classical model: every
    such run ended with "⚠ model: classical, the classical fallback, not InstanSeg", a warning
    that was always there. The manifest still names the model."""
    monkeypatch.setenv("WSITUI_MODEL_DIR", str(tmp_path / "no-models"))
    config = write_config(
        tmp_path / "c.toml",
        '[[samples]]\npath = "s.svs"\nsize = "2048x1536"\nseed = 3\n\n'
        '[[workflows]]\ntenant = "t"\nname = "w"\n'
        '  [[workflows.jobs]]\n  id = "cells"\n  type = "SEGMENT_CELLS"\n  slide = "s.svs"\n',
    )
    out = wsitui("run", config, "--data-dir", tmp_path / "data")
    assert out.returncode == 0, out.stderr
    assert "SUCCEEDED" in out.stdout and "notes:" not in out.stdout, out.stdout
    assert "⚠" not in out.stdout, out.stdout
    (manifest,) = (tmp_path / "data" / "results").glob("t/*/cells/manifest.json")
    assert json.loads(manifest.read_text())["model"]["name"] == "classical"
