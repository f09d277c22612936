"""Config samples: a deleted generated slide is made again (its truth file is ours)."""

from __future__ import annotations

from wsitui.session.config import load_config
from wsitui.session.plan import make_samples
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
