"""The JSONL event log: one JSON object a line, flushed per event (tail -f and crashes see it).

Opening is careful, because the path comes from a user: only a regular file is written (never a
FIFO, which would hang, nor a device such as /dev/full), and an existing file is appended to
only when it is empty or already an event log (its first line is a JSON object with an "event"
key) — so a mistyped `--events` can never append JSON to a slide or a document.
A write that fails later (disk full) stops the log and is kept in `error` for the face to say;
it never stops the engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import IO

from wsitui.core.events import Event
from wsitui.core.paths import file_kind

_FIRST_LINE_LIMIT = 64 * 1024  # an event line is far shorter; more means not an event log


class EventLogError(Exception):
    """The event log cannot be opened; one line naming the file and the fix."""


def check_event_log(path: Path) -> None:
    """Raise EventLogError unless `path` can be made, or appended to, as an event log."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        _check_parent(path)
        return
    except OSError as exc:
        raise EventLogError(f"event log {path} cannot be checked ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise EventLogError(
            f"event log {path} is {file_kind(st.st_mode)}; give a regular file path (.jsonl)"
        )
    if st.st_size == 0:
        return
    try:
        # O_NONBLOCK: if the path became a FIFO since the stat, this must not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise EventLogError(f"event log {path} cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise EventLogError(f"event log {path} is not a regular file; give a .jsonl path")
        head = f.read(_FIRST_LINE_LIMIT).split(b"\n", 1)[0]
    try:
        first = json.loads(head)
    except (ValueError, RecursionError):
        first = None
    if not (isinstance(first, dict) and "event" in first):
        raise EventLogError(
            f"event log {path} exists and is not a wsitui event log; "
            "give a new file or an existing .jsonl event log"
        )


def _check_parent(path: Path) -> None:
    """The nearest existing ancestor must be a directory we can write into."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise EventLogError(
            f"event log {path} cannot be created: {parent} is not a directory; fix the path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EventLogError(
            f"event log {path} cannot be created: {parent} is not writable; give another path"
        )


class JsonlEventLog:
    """A bus listener appending every event to a file."""

    def __init__(self, path: Path) -> None:
        check_event_log(path)
        self.path = path
        self.error: str | None = None  # set when a write failed; the log stopped there
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(
                path,
                os.O_WRONLY
                | os.O_APPEND
                | os.O_CREAT
                | os.O_NONBLOCK
                | getattr(os, "O_CLOEXEC", 0),
                0o644,
            )
        except OSError as exc:
            raise EventLogError(f"event log {path} cannot be written ({exc.strerror})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise EventLogError(f"event log {path} is not a regular file; give a .jsonl path")
        self._file: IO[str] | None = os.fdopen(fd, "a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError as exc:
            self.error = (
                f"event log {self.path}: writing failed ({exc.strerror or exc}); "
                "events after that are missing from it"
            )
            self._drop()

    def _drop(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):  # the line that failed to write fails again
                f.close()

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self._file.close()
        except OSError as exc:
            self.error = self.error or f"event log {self.path}: closing failed ({exc.strerror})"
        self._file = None
