"""Shards: per-tile results of one job attempt, kept on disk so a resumed job continues.

A job writes each finished unit of work (a tile, a band of tiles) as one shard under
`ctx.shards_dir`, atomically (temporary name, then rename): a shard that exists is whole. The
engine keeps the directory when a job resumes within an attempt and clears it when a new
attempt starts. `plan.json` records what the shards were computed for (slide, level, params,
layout); when a resumed job's plan differs, the old shards are useless and are removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

PLAN_FILE = "plan.json"
_KEY = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


class ShardStore:
    def __init__(self, root: Path, plan: Mapping[str, Any]) -> None:
        """Open the shards of `plan` under root, dropping any left by a different plan.

        `reused` says whether earlier shards were kept.
        """
        self.root = Path(root)
        self.plan = json.loads(json.dumps(plan, sort_keys=True))  # canonical, JSON-safe
        plan_path = self.root / PLAN_FILE
        old: Any = None
        with contextlib.suppress(OSError, ValueError):
            old = json.loads(plan_path.read_text())
        self.reused = old == self.plan
        if not self.reused:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True, exist_ok=True)
            self._write(PLAN_FILE, json.dumps(self.plan, sort_keys=True).encode())

    def _path(self, key: str, suffix: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"shard key {key!r} is not a safe file name")
        return self.root / f"{key}{suffix}"

    def _write(self, name: str, data: bytes) -> None:
        tmp = self.root / f".{name}.partial"
        try:
            with tmp.open("wb") as f:
                f.write(data)
            tmp.replace(self.root / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(self._path(key, ".bin").name, data)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key, ".bin").read_bytes()
        except FileNotFoundError:
            return None

    def put_array(self, key: str, arr: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
        self._write(self._path(key, ".npy").name, buf.getvalue())

    def get_array(self, key: str) -> np.ndarray | None:
        """The shard, or None if it is missing or unreadable (an unreadable one is removed)."""
        path = self._path(key, ".npy")
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            path.unlink(missing_ok=True)
            return None

    def has(self, key: str) -> bool:
        return self._path(key, ".npy").is_file() or self._path(key, ".bin").is_file()
