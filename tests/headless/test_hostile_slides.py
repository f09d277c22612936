"""Hostile slides from outside, through `wsitui run`: a slide swapped for another file between
the jobs of one chain. Each test is one probe that once went wrong (hostile2 round).

Every subprocess has a timeout (tests/headless/helpers.py): a hang fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.headless.helpers import write_config, wsitui
from tests.slides.samples import sample_slide_path

MASK = '  [[workflows.jobs]]\n  id = "m"\n  type = "TISSUE_MASK"\n  slide = "{slide}"\n'
CELLS = (
    '  [[workflows.jobs]]\n  id = "c"\n  type = "SEGMENT_CELLS"\n  slide = "{slide}"\n'
    '  depends_on = ["m"]\n  params = {{ model = "classical" }}\n'
)
MEASURE = (
    '  [[workflows.jobs]]\n  id = "x"\n  type = "MEASURE_CELLS"\n  slide = "{slide}"\n'
    '  depends_on = ["c"]\n'
)
HEAD = '[[workflows]]\ntenant = "t"\nname = "w"\n'


def jobs_of(out_json: str) -> dict[str, dict[str, object]]:
    (wf,) = json.loads(out_json)["workflows"]
    return {j["key"]: j for j in wf["jobs"]}


@pytest.fixture
def swapped_pair(tmp_path_factory: pytest.TempPathFactory, slides: tuple[Path, Path]):
    """Two sample slides of the same size (2048x1536) but other content (seeds 3 and 4)."""
    return slides[1], sample_slide_path(tmp_path_factory, (2048, 1536), 4)


@pytest.mark.parametrize("swap", ["other size", "same size, other content"])
def test_a_slide_replaced_after_its_mask_fails_the_cells_job_that_would_use_the_old_mask(
    tmp_path, slides, swapped_pair, swap
):
    """TISSUE_MASK ran on one file; the file was then replaced (another scan copied over it)
    and a SEGMENT_CELLS job was added. The cells job used the old file's mask on the new file
    and SUCCEEDED: the 2048x1536 mask laid over a 4096x3072 slide segmented a quarter of it,
    silently. It fails with one line naming the change and the fix; the mask's outputs stay."""
    slide = tmp_path / "slide.svs"
    shutil.copyfile(slides[1], slide)
    data = tmp_path / "data"
    first = write_config(tmp_path / "mask.toml", HEAD + MASK.format(slide=slide))
    assert wsitui("run", first, "--data-dir", data, "--quiet").returncode == 0
    mask_dir = next((data / "results" / "t").glob("*/m"))
    before = {p.name: p.read_bytes() for p in mask_dir.iterdir() if p.is_file()}

    shutil.copyfile(slides[0] if swap == "other size" else swapped_pair[1], slide)
    both = write_config(tmp_path / "both.toml", HEAD + (MASK + CELLS).format(slide=slide))
    out = wsitui("run", both, "--data-dir", data, "--json")
    assert out.returncode == 1, out.stderr
    jobs = jobs_of(out.stdout)
    assert jobs["m"]["state"] == "SUCCEEDED"
    assert jobs["c"]["state"] == "FAILED"
    error = str(jobs["c"]["error"])
    assert "\n" not in error
    assert "changed since TISSUE_MASK 'm' read it" in error, error
    assert "rerun 'm'" in error, error
    assert {p.name: p.read_bytes() for p in mask_dir.iterdir() if p.is_file()} == before


def test_a_slide_only_touched_is_used_with_a_warning(tmp_path, slides):
    """Same size, same pixels, a new modification time (touched, or copied back without -p):
    no reason to fail the chain, as a cohort with `match = "hash"` calls it unchanged; the
    cells job uses the mask and its manifest says the file was modified."""
    slide = tmp_path / "slide.svs"
    shutil.copyfile(slides[1], slide)
    data = tmp_path / "data"
    first = write_config(tmp_path / "mask.toml", HEAD + MASK.format(slide=slide))
    assert wsitui("run", first, "--data-dir", data, "--quiet").returncode == 0
    st = slide.stat()
    os.utime(slide, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    both = write_config(tmp_path / "both.toml", HEAD + (MASK + CELLS).format(slide=slide))
    out = wsitui("run", both, "--data-dir", data, "--json")
    assert out.returncode == 0, out.stderr
    manifest = json.loads(next((data / "results" / "t").glob("*/c/manifest.json")).read_text())
    assert manifest["tissue_source"] == "upstream:m"
    assert any("was modified since TISSUE_MASK 'm'" in w for w in manifest["warnings"])


def test_an_unchanged_slide_still_uses_its_upstream_mask(tmp_path, slides):
    """The check costs nothing when nothing moved: the cells job reads the mask job's mask."""
    slide = tmp_path / "slide.svs"
    shutil.copyfile(slides[1], slide)
    data = tmp_path / "data"
    first = write_config(tmp_path / "mask.toml", HEAD + MASK.format(slide=slide))
    assert wsitui("run", first, "--data-dir", data, "--quiet").returncode == 0
    both = write_config(tmp_path / "both.toml", HEAD + (MASK + CELLS).format(slide=slide))
    out = wsitui("run", both, "--data-dir", data, "--json")
    assert out.returncode == 0, out.stderr
    manifest = json.loads(next((data / "results" / "t").glob("*/c/manifest.json")).read_text())
    assert manifest["tissue_source"] == "upstream:m"


def test_a_slide_replaced_after_its_cells_fails_the_measure_job(tmp_path, slides, swapped_pair):
    """MEASURE_CELLS reads the pixels under SEGMENT_CELLS's outlines: on another file they are
    the wrong pixels. It fails with one line, like SEGMENT_CELLS on a stale mask."""
    slide = tmp_path / "slide.svs"
    shutil.copyfile(slides[1], slide)
    data = tmp_path / "data"
    first = write_config(tmp_path / "cells.toml", HEAD + (MASK + CELLS).format(slide=slide))
    assert wsitui("run", first, "--data-dir", data, "--quiet").returncode == 0
    shutil.copyfile(swapped_pair[1], slide)
    more = write_config(tmp_path / "all.toml", HEAD + (MASK + CELLS + MEASURE).format(slide=slide))
    out = wsitui("run", more, "--data-dir", data, "--json")
    assert out.returncode == 1, out.stderr
    error = str(jobs_of(out.stdout)["x"]["error"])
    assert "changed since SEGMENT_CELLS 'c' read it" in error, error
