from __future__ import annotations

import html
import re
from collections.abc import Callable

import anyio
from textual.pilot import Pilot
from textual.widgets import Input

from wsitui.core.records import JobSpec, WorkflowSpec
from wsitui.tui.app import WsituiApp
from wsitui.tui.screens.dialogs import AddJobDialog
from wsitui.tui.widgets.lanes import JobCard


async def app_ready(app: WsituiApp, timeout: float = 30.0) -> None:
    """Wait until the app's engine is open. Fails, never hangs, when the app exits first (its
    engine refused to open, e.g. another process held the data dir: a bare `ready.wait()` then
    waited forever, and so did the test run) or after `timeout` s."""
    with anyio.fail_after(timeout):
        while not app.ready.is_set():
            if app.return_code is not None:
                raise AssertionError(f"the app exited (code {app.return_code}) before it was ready")
            await anyio.sleep(0.01)


def spec(name: str, *jobs: tuple) -> WorkflowSpec:
    """jobs: (key, branch[, depends_on])."""
    return WorkflowSpec(
        name=name,
        jobs=tuple(
            JobSpec(
                id=j[0],
                type="TISSUE_MASK",
                slide="samples/demo.svs",
                branch=j[1],
                depends_on=j[2] if len(j) > 2 else (),
            )
            for j in jobs
        ),
    )


async def settle(app: WsituiApp, pilot: Pilot, until: Callable[[], bool] | None = None) -> None:
    """Let the engine and the UI catch up, deterministically, before a snapshot or assert."""
    await app_ready(app)
    if until is not None:
        with anyio.fail_after(10):
            await app.engine.wait_until(until)
    for _ in range(2):
        await pilot.pause()
        await app.flush()
    await pilot.pause()


async def add_job_via_dialog(app: WsituiApp, pilot: Pilot, slide: str) -> None:
    """Press a, give the slide path, submit, and wait for the slide check to finish (the
    dialog closes when the slide opens, and stays open with the error when it does not)."""
    await pilot.press("a")
    await pilot.pause()
    assert isinstance(app.screen, AddJobDialog)
    app.screen.query_one("#slide", Input).value = slide
    await pilot.press("enter")
    await pilot.pause()
    for worker in [w for w in app.workers if w.group == "add-job"]:
        await worker.wait()
    await settle(app, pilot)


def card_text(card: JobCard) -> tuple[str, str]:
    """What a card says: its badge line and its times line."""
    return str(card.query_one(".badge").render()), str(card.query_one(".times").render())


async def wait_for(pilot: Pilot, predicate: Callable[[], bool]) -> None:
    """Let the app run (its timers included) until `predicate` holds; fail after 10 s."""
    with anyio.fail_after(10):
        while not predicate():
            await pilot.pause(0.05)


def screen_text(app: WsituiApp) -> str:
    """What the terminal shows now, line by line (from the app's SVG screenshot)."""
    svg = app.export_screenshot()
    rows: dict[float, list[tuple[float, str]]] = {}
    for m in re.finditer(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        x, y, text = float(m.group(1)), float(m.group(2)), html.unescape(m.group(3))
        rows.setdefault(y, []).append((x, text))
    return "\n".join(
        "".join(t for _, t in sorted(parts)).replace("\xa0", " ").rstrip()
        for _, parts in sorted(rows.items())
    )


async def start_one_job(app: WsituiApp, pilot: Pilot, name: str = "w", key: str = "run") -> str:
    """Submit alice's one-job workflow `name` (job `key` on branch A) and wait until it runs
    (its tiles counted); its job id."""
    w = app.engine.submit("alice", spec(name, (key, "A")))
    job_id = w.jobs[0].id
    await settle(app, pilot, lambda: app.engine.job("alice", job_id).tiles_total > 0)
    return job_id
