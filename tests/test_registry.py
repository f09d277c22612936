"""A job type is one line in wsitui.jobs.registry.JOB_TYPES: registered there (and nowhere
else), a new type is accepted by the config with its own config section, runs in a session's
engine, and is offered by the add-job dialog with the fields it declares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from textual.app import App, ComposeResult
from textual.widgets import Label, Select

from wsitui.core.engine import Engine
from wsitui.core.executor import (
    ConfigSection,
    DialogField,
    Executor,
    JobContext,
    SectionModel,
)
from wsitui.core.records import JobSpec, WorkflowSpec
from wsitui.jobs import registry
from wsitui.session.config import ConfigError, JobConfig, load_config
from wsitui.session.plan import changed_fields
from wsitui.tui.screens.dialogs import AddJobDialog, Devices

pytestmark = pytest.mark.anyio


class CountSection(SectionModel):
    """[count]: a default for COUNT_SPOTS jobs."""

    threshold: int = 10

    def apply(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"threshold": self.threshold, **params}


class CountParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: int = 10
    workers: int = 1  # how many threads count: the count is the same


class CountSpotsExecutor(Executor):
    """A job type that exists only in this test (nothing in wsitui names it)."""

    job_type = "COUNT_SPOTS"
    params_model = CountParams
    config_section = ConfigSection("count", CountSection)
    result_neutral = frozenset({"workers"})
    dialog_fields = frozenset({DialogField.MODEL})

    async def run(self, ctx: JobContext) -> None:
        ctx.report(1, 1)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "JOB_TYPES", [*registry.JOB_TYPES, CountSpotsExecutor])


CONFIG = """
[count]
threshold = 3

[[workflows]]
tenant = "t"
name = "w"
[[workflows.jobs]]
id = "spots"
type = "{kind}"
slide = "s.svs"
[[workflows.jobs]]
id = "mine"
type = "{kind}"
slide = "s.svs"
params = {{ threshold = 7 }}
"""


def _load(tmp_path: Path, kind: str) -> dict[str, dict[str, Any]]:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(kind=kind))
    return {j.id: j.params for j in load_config(path).workflows[0].jobs}


def test_a_registered_job_type_is_accepted_by_the_config_with_its_own_section(
    tmp_path: Path, registered: None
) -> None:
    assert _load(tmp_path, "COUNT_SPOTS") == {
        "spots": {"threshold": 3},  # from [count]
        "mine": {"threshold": 7},  # a job's own params win
    }


def test_an_unregistered_job_type_is_one_line_naming_the_known_ones(
    tmp_path: Path, registered: None
) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, "COUNT_SPOT")
    msg = str(e.value)
    assert "\n" not in msg
    assert (
        "workflows[0].jobs[0].type: unknown job type 'COUNT_SPOT' (did you mean COUNT_SPOTS?); "
        "use one of: " in msg
    )
    assert "use one of: TISSUE_MASK, SEGMENT_CELLS, MEASURE_CELLS, COUNT_SPOTS [and 1" in msg


def test_without_registration_neither_the_type_nor_its_section_is_known(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="count: Extra inputs are not permitted"):
        _load(tmp_path, "TISSUE_MASK")
    with pytest.raises(ConfigError, match="unknown job type 'COUNT_SPOTS'"):
        (tmp_path / "d.toml").write_text(CONFIG.split("\n", 4)[-1].format(kind="COUNT_SPOTS"))
        load_config(tmp_path / "d.toml")


async def test_a_registered_job_type_runs_in_the_engine_a_session_builds(
    tmp_path: Path, registered: None
) -> None:
    engine = Engine(tmp_path / "d", registry.default_executors())
    async with engine:
        status = engine.submit(
            "t", WorkflowSpec(name="w", jobs=(JobSpec(id="s", type="COUNT_SPOTS", slide="x"),))
        )
        (job,) = status.jobs
        await engine.wait_until(lambda: engine.job("t", job.id).state.terminal)
        assert str(engine.job("t", job.id).state) == "SUCCEEDED"


async def test_a_rerun_that_changes_only_result_neutral_params_is_not_a_change(
    tmp_path: Path, registered: None
) -> None:
    engine = Engine(tmp_path / "d", registry.default_executors())
    async with engine:
        spec = JobSpec(id="s", type="COUNT_SPOTS", slide="x", params={"threshold": 3})
        status = engine.submit("t", WorkflowSpec(name="w", jobs=(spec,)), start=False)
        (old,) = status.jobs

        def changed(**params: int) -> list[str]:
            new = JobConfig(id="s", type="COUNT_SPOTS", slide=Path("x"), params=params)
            return changed_fields(engine, status.workflow.id, new, old)

        assert changed(threshold=3, workers=8) == []  # the executor says workers change nothing
        assert changed(threshold=4) == ["params"]


class _Host(App[None]):
    def compose(self) -> ComposeResult:
        yield Label("host")


async def test_a_registered_job_type_is_offered_by_the_add_job_dialog(registered: None) -> None:
    app = _Host()
    async with app.run_test(size=(100, 40)) as pilot:
        dialog = AddJobDialog("w", [], [], devices=Devices(gpus=0, mps=False))
        await app.push_screen(dialog)
        await pilot.pause()
        kind = dialog.query_one("#type", Select)
        assert [value for _, value in kind._options] == [
            "TISSUE_MASK", "SEGMENT_CELLS", "MEASURE_CELLS", "COUNT_SPOTS",
        ]  # fmt: skip
        assert not dialog.query_one("#model-opts").display  # TISSUE_MASK takes no model
        kind.value = "COUNT_SPOTS"
        await pilot.pause()
        assert dialog.query_one("#model-opts").display
        assert dialog.query_one("#model").display  # it declares a model field...
        assert not dialog.query_one("#device").display  # ...and no device


def test_every_shipped_job_type_names_its_card() -> None:
    """A card's title is the type's short name ("mask", "cells", "measure"), never the bare
    type name repeated beside itself."""
    names = {cls.job_type: cls.short_name for cls in registry.JOB_TYPES}
    assert all(names.values()), names
    assert len(set(names.values())) == len(names)


def test_python_dash_m_wsitui_is_the_command_line() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "wsitui", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
