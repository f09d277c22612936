"""The TUI opens through `Session.open` like the other faces: what the engine commits while it
opens (recovery) reaches `--events`, and config workflows the session skips are said, not hidden.

The first engine of each scenario runs a scripted executor (a stand-in for the work, so a job is
RUNNING at a known instant); the TUI then runs the real session on a copy of that state, as a
SIGKILL would leave it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import anyio
import pytest

from tests.core.crash import snapshot
from tests.core.oracle import SIDE_EFFECTS
from tests.slides.samples import sample_slide_path
from tests.tui.fakes import ScriptedExecutor
from tests.tui.helpers import app_ready
from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.session.session import SessionOptions, prepare_session
from wsitui.tui.main import build_app

pytestmark = pytest.mark.anyio
SIZE = (120, 40)


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_slide_path(tmp_path_factory, (2048, 1536), 3)


def transitions(db: Path) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT job_id, state, reason FROM transitions ORDER BY rowid")
        return [tuple(r) for r in rows]
    finally:
        con.close()


async def test_recovery_at_open_is_in_the_tui_event_log(tmp_path: Path, slide: Path):
    ex = ScriptedExecutor()
    job = JobSpec(id="mask", type="TISSUE_MASK", slide=str(slide), params={"tile_size": 64})
    async with Engine(tmp_path / "first", [ex]) as engine:
        status = engine.submit("alice", WorkflowSpec(name="w", jobs=(job,)))
        job_id = status.jobs[0].id
        with anyio.fail_after(30):
            await engine.wait_until(lambda: engine.job("alice", job_id).state is JobState.RUNNING)
        data = snapshot(engine, tmp_path / "killed")  # the job RUNNING on disk
        ex.release("mask")
    before = len(transitions(data / "state.db"))

    events = tmp_path / "events.jsonl"
    session = prepare_session(SessionOptions(data_dir=data, events=events))
    app = build_app(session, "alice")
    try:
        async with app.run_test(size=SIZE):
            with anyio.fail_after(120):
                await app_ready(app)
                # The resumed job runs for real now (TISSUE_MASK on the sample slide).
                await app.engine.wait_until(
                    lambda: app.engine.job("alice", job_id).state is JobState.SUCCEEDED
                )
            await app.shutdown()
    finally:
        session.close()

    logged = [
        (e["job_id"], e["state"], e["reason"])
        for e in map(json.loads, events.read_text().splitlines())
        if e.get("event") == "job_state" and not e["reason"].startswith(SIDE_EFFECTS)
    ]
    committed = transitions(data / "state.db")[before:]
    assert committed[0][:2] == (job_id, "PENDING")
    assert committed[0][2].startswith("interrupted")
    assert logged == committed  # recovery included: the log replays to the store


def two_workflows(path: Path, slide: Path, tile_size: int) -> Path:
    path.write_text(
        "".join(
            f'[[workflows]]\ntenant = "t"\nname = "{name}"\n'
            f'  [[workflows.jobs]]\n  id = "m"\n  type = "TISSUE_MASK"\n  slide = "{slide}"\n'
            f"  params = {{ tile_size = {size} }}\n"
            for name, size in (("kept", 64), ("changed", tile_size))
        )
    )
    return path


async def test_a_skipped_config_workflow_is_a_warning_at_start(tmp_path: Path, slide: Path):
    config = two_workflows(tmp_path / "c.toml", slide, 64)
    opts = SessionOptions(config=config, data_dir=tmp_path / "data")
    session = prepare_session(opts)
    app = build_app(session, "t")
    try:
        async with app.run_test(size=SIZE):
            with anyio.fail_after(60):
                await app_ready(app)
            await app.shutdown()
    finally:
        session.close()
    assert not [n for n in app.notes if n.severity == "warning"]

    two_workflows(config, slide, 128)  # "changed" no longer matches what is stored
    session = prepare_session(opts)
    (line,) = session.skipped()
    assert line.startswith("workflows[1] (t/changed) skipped")
    app = build_app(session, "t")
    try:
        async with app.run_test(size=SIZE) as pilot:
            with anyio.fail_after(60):
                await app_ready(app)
            await pilot.pause()
            warnings = [n for n in app.notes if n.severity == "warning"]
            assert [n.message for n in warnings] == [line]
            assert app.is_running  # a skipped workflow is news, not an exit
            await app.shutdown()
    finally:
        session.close()


def test_the_tui_without_a_terminal_says_so_in_one_line_instead_of_drawing_into_a_file(
    tmp_path, capsys, monkeypatch
):
    """From a script, cron or CI (`wsitui < /dev/null > log 2>&1`) the TUI drew escape codes
    into the file and waited for keys forever."""
    from wsitui.tui.main import no_terminal, tui_main

    monkeypatch.delenv("TEXTUAL_DRIVER", raising=False)
    config = tmp_path / "c.toml"
    config.write_text('[ui]\ntenant = "alice"\n')
    assert tui_main(config, tmp_path / "data", None) == 2  # pytest's streams are no terminal
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a terminal" in err and "wsitui run" in err, err
    monkeypatch.setenv("TEXTUAL_DRIVER", "textual.drivers.web_driver:WebDriver")
    assert no_terminal() == ""  # `wsitui serve`: the browser is its terminal
