"""Two job cards whose long keys share their first 30 characters stay apart on 26-column cards.

Found by an outside QA round: the border cut a card's title at its end, so
`tcga-brca-cohort-2024-segment-slide-001` and `...-002` both read `tcga-brca-cohort-2…`. A key
too long for its card is now cut in its middle, keeping its tail (and the job type)."""

from __future__ import annotations

import pytest

from tests.tui.conftest import make_app
from tests.tui.helpers import app_ready, screen_text, settle, spec
from wsitui.core.text import cut_middle
from wsitui.tui.widgets.lanes import JobCard

pytestmark = pytest.mark.anyio

PREFIX = "tcga-brca-cohort-2024-segment-"  # 30 characters
assert len(PREFIX) == 30


def test_cut_middle_keeps_the_head_and_more_of_the_tail():
    assert cut_middle("short", 10) == "short"
    cut = cut_middle(PREFIX + "slide-001", 14)
    assert len(cut) == 14 and cut.startswith("tcg") and cut.endswith("slide-001"), cut
    assert cut_middle("abcdef", 1) == "…" and cut_middle("abcdef", 0) == ""


async def test_cards_with_long_keys_sharing_30_characters_read_apart_at_80_columns(tmp_path):
    app, _, _ = make_app(tmp_path / "data")
    keys = [f"{PREFIX}slide-00{i}" for i in (1, 2, 3)]
    async with app.run_test(size=(80, 24)) as pilot:
        await app_ready(app)
        jobs = [(k, b) for k, b in zip(keys, "ABC", strict=True)]
        app.engine.submit("alice", spec("long-keys", *jobs), start=False)
        await settle(app, pilot)
        cards = list(app.query(JobCard))
        assert len(cards) == 3
        assert all(c.outer_size.width <= 27 for c in cards)  # three lanes share 80 columns
        titles = [str(c.border_title) for c in cards]
        for key, title, card in zip(keys, titles, cards, strict=True):
            assert title.endswith(f"{key[-3:]} · mask"), titles  # its tail and its type
            assert len(title) <= card.outer_size.width - 6, titles  # the border cuts nothing
        assert len(set(titles)) == 3, titles
        # What the screen shows: each card's top border holds its own tail.
        top = next(ln for ln in screen_text(app).splitlines() if "· mask" in ln)
        for key in keys:
            assert f"{key[-3:]} · mask " in top, top
        await app.shutdown()
