"""Every key `?` lists, pressed on a card in each state and on a cohort table (empty filter
results and odd characters included): the app must stay up, with no traceback."""

from __future__ import annotations

import pytest
from textual.screen import ModalScreen

from tests.tui.conftest import make_app
from tests.tui.helpers import settle, spec
from tests.tui.test_cohort_table import held_cohort
from wsitui.core.records import JobState
from wsitui.tui.app import WsituiApp
from wsitui.tui.widgets.lanes import JobCard

pytestmark = pytest.mark.anyio

# every app key from `?` except q (quits) and d (generates a sample slide: its own test)
KEYS = ["n", "a", "s", "S", "c", "r", "R", "u", "enter", "p", "v", "m", "slash", "y", "Y",
        "o", "N", "j", "k", "h", "l", "t", "T", "question_mark", "f1"]  # fmt: skip


async def back_to_main(app: WsituiApp, pilot) -> None:
    """Close whatever a key opened (dialog, detail, viewer, help) and leave any filter."""
    for _ in range(4):
        if len(app.screen_stack) == 1:
            break
        await pilot.press("escape")
        await pilot.pause()
    await pilot.press("escape")
    await pilot.pause()
    assert len(app.screen_stack) == 1, app.screen


async def test_every_key_on_a_card_in_each_state_keeps_the_app_up(tmp_path, monkeypatch):
    monkeypatch.setattr("wsitui.tui.app.system_opener", lambda: None)
    app, ex, _ = make_app(tmp_path / "data", max_workers=1)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        jobs = [(k, f"b{i}") for i, k in enumerate(("ok", "bad", "gone", "run", "wait"))]
        wf = app.engine.submit("alice", spec("w", *jobs))

        def state(key: str) -> JobState:
            return app.engine.job("alice", f"{wf.workflow.id}.{key}").state

        for key, outcome in (("ok", "ok"), ("bad", "fail")):
            await settle(app, pilot, lambda k=key: state(k) is JobState.RUNNING)
            await settle(app, pilot, lambda k=key: ex.gates.get(k) is not None)
            ex.release(key, outcome)
            await settle(app, pilot, lambda k=key: state(k).terminal)
        await settle(app, pilot, lambda: state("gone") is JobState.RUNNING)
        app.engine.cancel("alice", f"{wf.workflow.id}.gone")
        await settle(app, pilot, lambda: state("gone") is JobState.CANCELED)
        await settle(app, pilot, lambda: state("run") is JobState.RUNNING)
        assert state("wait") is JobState.PENDING

        said: list[str] = []
        monkeypatch.setattr(app, "tell", lambda m, **k: said.append(f"{key}/{press}: {m}"))
        for key in ("ok", "bad", "gone", "wait", "run"):
            for press in KEYS:
                card = next(c for c in app.query(JobCard) if c.job.key == key)
                card.focus()
                await pilot.pause()
                await pilot.press(press)
                await settle(app, pilot)
                if isinstance(app.screen, ModalScreen) and "y" in str(app.screen.BINDINGS):
                    await pilot.press("n")  # a confirm dialog: answer no
                    await pilot.pause()
                await back_to_main(app, pilot)
        # each key answered in words, never with an exception's repr
        assert said and not [m for m in said if "Error(" in m or "Traceback" in m], said
        ex.release("run")
        ex.release("wait")
        await app.shutdown()


ODD = ["[/]", "[b]x", "\\", ".*", "(", "%s{}", "é'\"", "zzz", "c-2"]


async def test_cohort_table_keys_with_no_rows_and_odd_filters(tmp_path, monkeypatch):
    """t/T and enter with filters that are markup, regex or format text, or match nothing."""
    async with held_cohort(tmp_path) as (app, pilot, table, _wf, _ex):
        said: list[str] = []
        monkeypatch.setattr(app, "tell", lambda m, **k: said.append(m))
        for text in ODD:
            await pilot.press("slash", *text, "enter")  # enter: from the filter to the table
            await settle(app, pilot)
            assert app.filter_text == text.strip().lower()
            rows = [str(k.value) for k in table.rows] if table.display else []
            for press in ("t", "T", "enter"):
                await pilot.press(press)
                await settle(app, pilot)
                if press != "enter":
                    assert len(app.screen_stack) == 1
                await back_to_main(app, pilot)
                await pilot.press("slash", *text, "enter")
                await settle(app, pilot)
            if text == "c-2":
                assert sorted(rows) == ["TCGA-02-A0SB", "TCGA-05-A0SB"]
            elif text in ("zzz", "(", "[b]x", ".*", "%s{}", "é'\""):
                assert rows == [], text  # nothing matches: no rows, and enter said so
                assert said[-1].startswith(f"nothing matches {text!r}: change the filter")
            await back_to_main(app, pilot)
            assert app.filter_text == ""
        assert table.display and len(table.rows) == 8  # the filter cleared, every slide back
        assert not [m for m in said if "Error(" in m or "Traceback" in m], said
