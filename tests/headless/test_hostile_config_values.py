"""Config values of the wrong type or empty, in the sections that take paths.

`data_dir = ""` was read as the config's own folder: `wsitui run` wrote state.db, engine.lock
and results/ beside the config. `data_dir = 5` said "Input is not a valid path for <class
'pathlib.Path'>", Python's type where the user wants the fix.
"""

from __future__ import annotations

import pytest

from tests.headless.helpers import assert_one_line_error, write_config, wsitui

JOB = '[[workflows]]\ntenant = "t"\nname = "w"\n  [[workflows.jobs]]\n  id = "a"\n'
JOB += '  type = "TISSUE_MASK"\n'

EMPTY = {
    "paths.data_dir": '[paths]\ndata_dir = ""\n' + JOB + '  slide = "{slide}"\n',
    "paths.results": '[paths]\nresults = "  "\n' + JOB + '  slide = "{slide}"\n',
    "paths.events": '[paths]\nevents = ""\n' + JOB + '  slide = "{slide}"\n',
    "workflows[0].jobs[0].slide": JOB + '  slide = ""\n',
    "samples[0].path": '[[samples]]\npath = ""\n',
}


@pytest.mark.parametrize("key", list(EMPTY))
def test_an_empty_path_is_one_line_and_nothing_is_written_beside_the_config(tmp_path, slides, key):
    folder = tmp_path / "cfg"
    folder.mkdir()
    config = write_config(folder / "c.toml", EMPTY[key].format(slide=slides[1]))
    out = wsitui("run", config, "--quiet")
    assert_one_line_error(out, 2, "c.toml", f"{key}: the path is empty")
    assert sorted(p.name for p in folder.iterdir()) == ["c.toml"]


@pytest.mark.parametrize("value", ["5", "true", '["data"]', "{ a = 1 }"])
def test_a_path_of_another_type_says_how_to_write_one(tmp_path, slides, value):
    config = write_config(
        tmp_path / "c.toml", f"[paths]\ndata_dir = {value}\n" + JOB + f'  slide = "{slides[1]}"\n'
    )
    line = assert_one_line_error(
        wsitui("run", config), 2, "c.toml", "paths.data_dir: Input should be a path", "quoted"
    )
    assert "<class" not in line and "pathlib" not in line


def test_a_dot_is_still_the_config_folder_on_purpose(tmp_path, slides):
    folder = tmp_path / "cfg"
    folder.mkdir()
    config = write_config(
        folder / "c.toml", '[paths]\ndata_dir = "."\n' + JOB + f'  slide = "{slides[1]}"\n'
    )
    out = wsitui("run", config, "--quiet")
    assert out.returncode == 0, out.stderr
    assert (folder / "state.db").is_file()


@pytest.mark.parametrize(
    "args",
    [
        ("run", "c.toml", "--quiet", "--data-dir", ""),
        ("run", "c.toml", "--quiet", "--out", " "),
        ("run", "c.toml", "--quiet", "--events", ""),
        ("run", "c.toml", "--quiet", "--log-file", ""),
        ("status", "--json", "--data-dir", ""),
        ("--data-dir", ""),
    ],
    ids=["run-data-dir", "run-out", "run-events", "run-log-file", "status", "tui"],
)
def test_an_empty_path_option_is_refused_not_taken_for_the_current_folder(tmp_path, slides, args):
    """`--data-dir "$DIR"` with DIR unset gave Path(""): state.db, engine.lock and results/
    (and with `--out ""` a folder per tenant) landed in the folder the shell stood in."""
    write_config(tmp_path / "c.toml", JOB + f'  slide = "{slides[1]}"\n')
    out = wsitui(*args, cwd=tmp_path)
    option = args[-2]
    assert_one_line_error(out, 2, f"argument {option}: the path is empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


@pytest.mark.parametrize("value", ["5", "[5]", "{ a = 1 }", "true"])
def test_slides_of_another_shape_names_the_key_not_pydantics_union(tmp_path, value):
    """`slides = 5` said "workflows[0].slides.list[str]: Input should be a valid list": the
    key path held a Python type from inside pydantic."""
    body = f'[[workflows]]\ntenant = "t"\nname = "w"\nslides = {value}\n'
    job = '  [[workflows.jobs]]\n  id = "a"\n  type = "TISSUE_MASK"\n'
    config = write_config(tmp_path / "c.toml", body + job)
    line = assert_one_line_error(
        wsitui("run", config, "--data-dir", tmp_path / "data"),
        2,
        "c.toml: workflows[0].slides: not a slide list",
        '["cohort/*.svs"]',
    )
    assert "list[str]" not in line and "[and" not in line


CHECKED_LATER = {  # found after the file was read (the DAG, params, globs): named the key only
    "cycle": (JOB + '  slide = "{slide}"\n  depends_on = ["a"]\n', "workflows[0] (t/w): dep"),
    "params": (JOB + '  slide = "{slide}"\n  params = {{ tile_size = -5 }}\n', "params.tile_size"),
    "glob": (
        '[[workflows]]\ntenant = "t"\nname = "w"\nslides = ["none/*.svs"]\n'
        '  [[workflows.jobs]]\n  id = "a"\n  type = "TISSUE_MASK"\n',
        "workflows[0] (t/w): slides glob",
    ),
    "sample": (
        '[[samples]]\npath = "x.svs"\nsize = "0x0"\n' + JOB + '  slide = "{slide}"\n',
        "samples[0]: size 0x0",
    ),
}


@pytest.mark.parametrize("case", list(CHECKED_LATER))
def test_an_error_found_after_reading_the_config_names_its_file(tmp_path, slides, case):
    body, expected = CHECKED_LATER[case]
    config = write_config(tmp_path / "c.toml", body.format(slide=slides[1]))
    line = assert_one_line_error(wsitui("run", config, "--data-dir", tmp_path / "data"), 2)
    assert line.startswith(f"wsitui: {config}: ") and expected in line, line


@pytest.mark.parametrize("limit", ["max_queued", "max_queued_per_tenant"])
def test_a_config_larger_than_a_queue_limit_is_not_told_to_retry_later(tmp_path, slides, limit):
    """Two jobs under `max_queued = 1` said "... can never fit ...; raise [limits] max_queued
    to at least 2, or split the workflow; ...: raise [limits] in the config, or retry later":
    a retry never helps. The line keeps the fix that does."""
    second = f'  [[workflows.jobs]]\n  id = "b"\n  type = "TISSUE_MASK"\n  slide = "{slides[1]}"\n'
    body = f"[limits]\n{limit} = 1\n" + JOB + f'  slide = "{slides[1]}"\n' + second
    config = write_config(tmp_path / "c.toml", body)
    line = assert_one_line_error(
        wsitui("run", config, "--data-dir", tmp_path / "data"),
        3,
        "can never fit",
        f"raise [limits] {limit} to at least 2",
        "nothing of the config was submitted",
    )
    assert "retry later" not in line
