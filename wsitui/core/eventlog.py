"""The JSONL event log: one JSON object a line, flushed per event (tail -f and crashes see it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from wsitui.core.events import Event


class JsonlEventLog:
    """A bus listener appending every event to a file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        self._file.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
