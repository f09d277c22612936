"""Writing result files so a reader never sees half of one."""

from __future__ import annotations

import hashlib
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` at `path` through a temporary sibling and a rename.

    A crash leaves either the old file or the new one (plus, at worst, a hidden `.partial`
    sibling that the next write of the same path replaces), never a torn file.
    """
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with tmp.open("wb") as f:
            f.write(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
