"""Make any text safe to print as one terminal line: the one helper every error message uses.

Paths, workflow names and library messages can hold newlines, escape codes (ESC), or bidi
overrides. Printed raw they split one error into many lines, or drive the terminal. Here every
such character becomes a visible escape (`\\n`, `\\x1b`, `\\u202e`), and nothing else changes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

# Control, format (bidi overrides), surrogate, private, unassigned; line/paragraph separators.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def one_line(text: object) -> str:
    """`str(text)` with every character that could break the line or drive the terminal escaped."""
    s = str(text)
    if s.isprintable() and "\x1b" not in s:  # fast path: nothing to escape
        return s
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in s)


def tiles_text(done: int, total: int, *, succeeded: bool = False, skipped: int = 0) -> str:
    """Tiles as `done/total`, or `—` while the total is not known: a job that never started
    (or has not counted its tiles yet) has 0 of 0, which reads as finished empty work. A job
    (or workflow) that SUCCEEDED with no tile did finish empty work: `0 tiles`, not "not
    counted yet". `skipped`: tiles settled without work (a job's `skipped` counter, e.g.
    background tiles a tissue mask left out), which its total leaves out: `19/19 +5
    skipped`, the 24 tiles its manifest counts."""
    text = f"{done}/{total}" if total > 0 else "0 tiles" if succeeded else "—"
    return f"{text} +{skipped:,} skipped" if skipped > 0 else text


def skipped_tiles(counters: Mapping[str, int]) -> int:
    """Tiles a job settled without work, from its `skipped` counter (0 without one)."""
    value = counters.get("skipped", 0)
    return value if isinstance(value, int) and value > 0 else 0


def cut_middle(text: str, width: int) -> str:
    """`text` in at most `width` characters: its middle gives way to "…", keeping its head and
    more of its tail, where ids that share a prefix differ ("tcga-brca-…-slide-017"). For
    single-width text (ids, keys)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = (width - 1) // 3
    return f"{text[:head]}…{text[len(text) - (width - 1 - head) :]}"
