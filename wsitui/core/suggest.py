"""A "did you mean" for a name a user mistyped (a job type in lower case, a letter missing)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def _plain(name: str) -> str:
    return name.strip().upper().replace("-", "_").replace(" ", "_")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' naming the choice `name` was most likely meant to be, else ''.

    Case, hyphens and spaces are ignored ('count-spots' is COUNT_SPOTS); a start of one choice
    only names it ('COUNT' is COUNT_SPOTS when no other choice starts so); otherwise the closest
    choice by difflib's ratio, at least 0.75 alike (one or two letters off)."""
    options = {_plain(c): c for c in choices}
    plain = _plain(name)
    if plain in options:
        return f" (did you mean {options[plain]}?)" if options[plain] != name else ""
    starts = [c for c in options if len(plain) >= 4 and c.startswith(plain)]
    if len(starts) == 1:
        return f" (did you mean {options[starts[0]]}?)"
    close = difflib.get_close_matches(plain, list(options), n=1, cutoff=0.75)
    return f" (did you mean {options[close[0]]}?)" if close and options[close[0]] != name else ""
