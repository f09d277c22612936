"""Workflow names are free text (not ids): what they may hold, in every way one gets in.

A name with a bidi override ("a\\u202eb") was accepted: `wsitui status` showed it escaped, the
TUI's workflow list drew it raw (the terminal reorders the rest of the line), and a name of
blanks was an empty row. Such names are refused where they enter: the config, the engine's
submit, and the TUI's New workflow dialog. Emoji sequences (joiners) stay allowed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.headless.helpers import assert_one_line_error, write_config, wsitui
from wsitui.core.records import JobSpec, WorkflowSpec
from wsitui.session.config import load_config

REFUSED = {
    "bidi override": ("a\\u202eb", "'\\u202e'"),
    "escape code": ("a\\u001b[31mred", "'\\x1b'"),
    "newline": ("two\\nlines", "'\\n'"),
    "line separator": ("a\\u2028b", "'\\u2028'"),
    "isolate": ("x\\u2067y", "'\\u2067'"),
    "blank": ("   ", "blank"),
}


def name_config(path: Path, slide: Path | str, name: str) -> Path:
    """One TISSUE_MASK job in workflow t/<name>; `name` is TOML basic-string text."""
    return write_config(
        path,
        f'[[workflows]]\ntenant = "t"\nname = "{name}"\n'
        f'  [[workflows.jobs]]\n  id = "a"\n  type = "TISSUE_MASK"\n  slide = "{slide}"\n',
    )


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_workflow_name_that_would_break_or_reorder_its_line_is_one_line_exit_2(
    tmp_path, slides, case
):
    name, shown = REFUSED[case]
    config = name_config(tmp_path / "c.toml", slides[1], name)
    out = wsitui("run", config, "--data-dir", tmp_path / "data")
    assert_one_line_error(out, 2, "c.toml", "workflows[0].name", shown)
    assert not (tmp_path / "data" / "state.db").exists()  # refused before anything was stored


def test_emoji_and_other_scripts_stay_allowed_in_a_workflow_name(tmp_path, slides):
    name = "🧪 ünïcödé 工作流 👩\u200d🔬 ✌️"  # a joiner (U+200D) and a variation selector
    config = name_config(tmp_path / "c.toml", slides[1], name)
    assert load_config(config).workflows[0].name == name


@pytest.mark.parametrize("case", list(REFUSED))
def test_the_engine_refuses_such_a_name_from_any_face(case):
    name = REFUSED[case][0].encode().decode("unicode_escape")
    job = JobSpec(id="a", type="TISSUE_MASK", slide="s.svs")
    with pytest.raises(ValidationError, match="workflow name"):
        WorkflowSpec(name=name, jobs=(job,))
