"""The one error type of the slide layer."""

from __future__ import annotations

from pathlib import Path


class SlideError(Exception):
    """A slide cannot be opened, read or written.

    str() is always one line that names the file and says what is wrong and, where there is
    one, what to do about it; callers show it to the user as is (no traceback).
    """

    def __init__(self, message: str) -> None:
        # Keep messages one line even when they embed a library error with newlines in it.
        super().__init__(" ".join(message.split()))


def quoted(path: Path | str) -> str:
    """A path as messages show it: as the user gave it, quoted ('slides/x.svs')."""
    return f"'{path}'"
