"""sha256_file: the hash manifests record and the Dask client compares with its workers'."""

from __future__ import annotations

import hashlib
from pathlib import Path

from wsitui.core.digest import CHUNK_BYTES, sha256_file


def test_hash_of_a_file_longer_than_one_chunk_is_that_of_its_bytes(tmp_path: Path):
    data = bytes(range(256)) * (CHUNK_BYTES // 256 * 2 + 3)  # two chunks and a ragged end
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_hash_of_an_empty_file(tmp_path: Path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert sha256_file(path) == hashlib.sha256(b"").hexdigest()
