"""The served app most serve tests talk to: `wsitui serve` on a fresh data dir, tenant alice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.terminal import Served, start_serve


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = start_serve("--data-dir", tmp_path / "data", "--tenant", "alice")
    try:
        yield server
    finally:
        server.stop()
