"""A workflow made in the TUI under a config workflow's name must not take the config one's
place: `wsitui run` matches stored workflows by (tenant, name)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.headless.helpers import one_job_config, wsitui
from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, WorkflowSpec
from wsitui.jobs.registry import default_executors


async def _add_tui_workflow(data: Path, slide: Path) -> None:
    """What the TUI's "new workflow" did: same tenant and name, other jobs."""
    async with Engine(data, default_executors()) as engine:
        spec = JobSpec(id="a", type="TISSUE_MASK", slide=str(slide), branch="other")
        engine.submit("t", WorkflowSpec(name="w", jobs=(spec,)), start=False)


@pytest.mark.slow
def test_a_later_workflow_of_the_same_name_does_not_make_the_config_one_skip(
    tmp_path: Path, sample_slide: Path
):
    cfg = one_job_config(tmp_path / "c.toml", sample_slide)
    data = tmp_path / "data"
    first = wsitui("run", cfg, "--data-dir", data, "--quiet")
    assert first.returncode == 0, first.stderr
    anyio.run(_add_tui_workflow, data, sample_slide)
    again = wsitui("run", cfg, "--data-dir", data, "--quiet")
    assert again.returncode == 0, again.stderr  # resumed the config's own workflow: done
    assert "skipped" not in again.stderr
