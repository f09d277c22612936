"""A SEGMENT_CELLS `model` that names a file or folder is relative to the config file."""

from __future__ import annotations

from wsitui.session.config import load_config

CONFIG = """
[[workflows]]
tenant = "t"
name = "w"
  [[workflows.jobs]]
  id = "cells"
  type = "SEGMENT_CELLS"
  slide = "s.svs"
  params = {{ model = "{model}" }}
"""


def _model_of(tmp_path, model: str) -> str:
    (tmp_path / "conf").mkdir(exist_ok=True)
    config = tmp_path / "conf" / "c.toml"
    config.write_text(CONFIG.format(model=model))
    return load_config(config).workflows[0].jobs[0].params["model"]


def test_relative_model_paths_are_resolved_against_the_config_dir(tmp_path):
    base = (tmp_path / "conf").resolve()
    assert _model_of(tmp_path, "models/mine.pt") == str(base / "models" / "mine.pt")
    assert _model_of(tmp_path, "./mine") == str(base / "mine")
    (tmp_path / "conf" / "local_folder").mkdir()
    assert _model_of(tmp_path, "local_folder") == str(base / "local_folder")


def test_model_names_are_left_alone(tmp_path):
    assert _model_of(tmp_path, "brightfield_nuclei") == "brightfield_nuclei"
    assert _model_of(tmp_path, "classical") == "classical"
