"""Config samples: a deleted generated slide is made again (its truth file is ours)."""

from __future__ import annotations

import pytest

from wsitui.session.config import load_config
from wsitui.session.plan import InputError, make_samples
from wsitui.slides.sample import load_truth

CONFIG = """
[[samples]]
path = "s.svs"
size = "1024x1024"
seed = 4

[[workflows]]
tenant = "t"
name = "w"
  [[workflows.jobs]]
  id = "mask"
  type = "TISSUE_MASK"
  slide = "s.svs"
"""


def test_a_deleted_sample_with_its_own_truth_left_is_generated_again(tmp_path):
    (tmp_path / "c.toml").write_text(CONFIG)
    config = load_config(tmp_path / "c.toml")
    said: list[str] = []
    make_samples(config, said.append)
    (tmp_path / "s.svs").unlink()  # the truth file stays behind
    make_samples(config, said.append)
    assert (tmp_path / "s.svs").is_file() and len(said) == 2
    assert load_truth(tmp_path / "s.svs").seed == 4


def test_a_sample_under_a_non_tiff_name_is_refused_before_anything_is_made(tmp_path):
    # `path = "s.png"` generated an Aperio SVS called s.png that other tools misread.
    (tmp_path / "c.toml").write_text(CONFIG.replace('"s.svs"', '"s.png"'))
    config = load_config(tmp_path / "c.toml")
    said: list[str] = []
    with pytest.raises(InputError, match=r"samples\[0\] .*s\.png: cannot write .*\.svs, \.tif"):
        make_samples(config, said.append)
    assert said == [] and sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]
