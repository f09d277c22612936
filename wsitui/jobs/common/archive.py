"""artifacts.zip: a job's outputs in one file, for people who move results around."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

from wsitui.jobs.common.files import commit


def write_archive(
    out: Path, name: str, files: list[str], extra: Mapping[str, bytes] | None = None
) -> None:
    """Zip `files` (paths relative to `out`) plus `extra` (archive name -> bytes) into out/name.

    Written under a temporary name and renamed, so a partial zip is never seen.
    """
    tmp = out / f".{name}.partial"
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for rel in files:
                # PNGs are compressed already; deflating them again only costs time.
                kind = zipfile.ZIP_STORED if rel.endswith(".png") else zipfile.ZIP_DEFLATED
                zf.write(out / rel, rel, compress_type=kind)
            for rel in sorted(extra or {}):
                data = (extra or {})[rel]
                kind = zipfile.ZIP_STORED if rel.endswith(".png") else zipfile.ZIP_DEFLATED
                zf.writestr(rel, data, compress_type=kind)
        commit(tmp, out / name)  # fenced: an abandoned run's late archive never lands
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
