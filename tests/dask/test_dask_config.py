"""The config's [dask] section: defaults for SEGMENT_CELLS jobs that do not choose a backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsitui.session.config import ConfigError, load_config

JOBS = """
[[workflows]]
tenant = "t"
name = "w"
[[workflows.jobs]]
id = "mask"
type = "TISSUE_MASK"
slide = "s.svs"
[[workflows.jobs]]
id = "plain"
type = "SEGMENT_CELLS"
slide = "s.svs"
[[workflows.jobs]]
id = "mine"
type = "SEGMENT_CELLS"
slide = "s.svs"
params = { backend = "local" }
"""


def _params(tmp_path: Path, text: str) -> dict[str, dict]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return {j.id: j.params for j in load_config(path).workflows[0].jobs}


def test_the_dask_section_sets_the_backend_of_cells_jobs_that_do_not_choose_one(tmp_path):
    params = _params(
        tmp_path, '[dask]\nbackend = "dask"\nscheduler_address = "tcp://10.0.0.5:8786"\n' + JOBS
    )
    assert params["plain"] == {"backend": "dask", "scheduler_address": "tcp://10.0.0.5:8786"}
    assert params["mine"] == {"backend": "local"}  # a job's own choice wins
    assert params["mask"] == {}  # other job types take no backend


def test_without_a_dask_section_jobs_are_left_as_written(tmp_path):
    params = _params(tmp_path, JOBS)
    assert params == {"mask": {}, "plain": {}, "mine": {"backend": "local"}}


def test_a_bad_scheduler_address_is_one_line_naming_the_section(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[dask]\nbackend = "dask"\nscheduler_address = "not an address"\n' + JOBS)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert "c.toml: dask: scheduler_address 'not an address' is not a Dask scheduler" in msg
    assert msg.endswith("use e.g. tcp://host:8786")
