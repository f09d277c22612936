"""SHA-256 of a file's bytes: the one helper for result manifests and model-file checks."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 1 << 20  # read in 1 MiB pieces: a model or result file is never held whole


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of the file at `path` (no unpickling, no import: just its bytes)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()
