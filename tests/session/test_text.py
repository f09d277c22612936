"""The one helper that makes text safe to print as one terminal line."""

from __future__ import annotations

from wsitui.core.text import one_line


def test_line_breaks_and_escape_codes_become_visible_escapes():
    assert one_line("a\nb\r\tc") == "a\\nb\\r\\tc"
    assert one_line("\x1b[31mred\x07") == "\\x1b[31mred\\x07"
    assert one_line("x\u2028y\u202ez") == "x\\u2028y\\u202ez"  # line separator, bidi override


def test_printable_text_is_unchanged():
    for text in ("plain", "é 漢字 ✓", "[bold]not markup[/]", "a b", "\u00a0nbsp"):
        assert one_line(text) == text


def test_any_object_is_accepted():
    assert one_line(OSError(2, "No such file")) == "[Errno 2] No such file"
