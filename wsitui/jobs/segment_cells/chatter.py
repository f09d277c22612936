"""Library chatter goes to the log, never to stdout (where the TUI draws and `wsitui run` prints).

instanseg prints from inside its TorchScript post-processing ("Reached maximum number of
iterations - this is not expected!", "Too many seeds, skipping"); TorchScript's print goes
through Python's `sys.stdout`. `contextlib.redirect_stdout` would swap the process-wide
`sys.stdout` and swallow the UI's own writes from other threads, so instead `sys.stdout` is
wrapped once by a router that sends only the writes of threads inside `to_log()` to the
logger; every other thread's writes go where they went before.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

log = logging.getLogger("wsitui.models.chatter")
_local = threading.local()
_install = threading.Lock()


class _Router:
    """A stand-in for sys.stdout that diverts the writes of quieted threads to the log."""

    def __init__(self, base: TextIO) -> None:
        self._base = base

    def write(self, text: str) -> int:
        if getattr(_local, "depth", 0) > 0:
            buf = getattr(_local, "buf", "") + text
            *lines, rest = buf.split("\n")
            _local.buf = rest
            for line in lines:
                if line.strip():
                    _local.lines = getattr(_local, "lines", 0) + 1
                    log.info("library output: %s", line.strip())
            return len(text)
        return self._base.write(text)

    def flush(self) -> None:
        if getattr(_local, "depth", 0) == 0:
            self._base.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


def _ensure_router() -> None:
    with _install:
        if not isinstance(sys.stdout, _Router) and sys.stdout is not None:
            sys.stdout = _Router(sys.stdout)  # type: ignore[assignment]


@contextlib.contextmanager
def to_log() -> Iterator[None]:
    """Within this block, what this thread prints goes to the log, not to stdout."""
    _ensure_router()
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        if _local.depth == 0:
            rest = getattr(_local, "buf", "")
            _local.buf = ""
            if rest.strip():
                _local.lines = getattr(_local, "lines", 0) + 1
                log.info("library output: %s", rest.strip())


def lines_logged() -> int:
    """Lines this thread sent to the log so far (for tests and counters)."""
    return int(getattr(_local, "lines", 0))
