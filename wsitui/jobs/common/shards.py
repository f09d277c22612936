"""Shards: per-tile results kept on disk so a resumed or retried job continues where it was.

A job writes each finished unit of work (a tile, a band of tiles) as one shard under
`ctx.shards_dir`, atomically (temporary name, then a fenced rename, see `files.py`): a shard that
exists is whole, and a discarded run's late shard never lands. The engine keeps the directory
when a job resumes and when a new attempt (a retry) starts.

A shard is never trusted for being there. Each one starts with a record of what it belongs to:
the job, the attempt that wrote it, its key (the tile), a digest of the plan (slide identity,
params, layout) and a SHA-256 of its payload. A shard is used only when all of these match the
job that reads it and, when the store has a `check`, its payload decodes; any other shard
(copied over another tile's, from another job or plan, truncated, bit-flipped, crafted) is
deleted and its work redone, never a traceback. `stats` counts shards reused from before this
run (and how many of those an earlier attempt wrote) and shards redone.

`plan.json` records the plan: when it differs from the job's, every shard is useless and the
directory is emptied at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsitui.jobs.common.files import Fence, Fenced, commit, current_fence

PLAN_FILE = "plan.json"
MAGIC = b"WSITUI-SHARD/1\n"
_MAX_HEADER = 4096
_KEY = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


@dataclass(frozen=True, slots=True)
class ShardOwner:
    """Who writes and reads the shards: a shard of another job is never used."""

    job: str = ""
    attempt: int = 0


@dataclass(slots=True)
class ShardStats:
    reused: int = 0  # valid shards found from before this run (resume or earlier attempt)
    reused_from_earlier_attempts: int = 0  # of which an earlier attempt wrote
    redone: int = 0  # shards that did not match (tampered, corrupt, foreign): work redone

    def as_dict(self) -> dict[str, int]:
        return {
            "reused": self.reused,
            "reused_from_earlier_attempts": self.reused_from_earlier_attempts,
            "redone": self.redone,
        }


def plan_digest(plan: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


class ShardStore:
    def __init__(
        self,
        root: Path,
        plan: Mapping[str, Any],
        *,
        owner: ShardOwner | None = None,
        check: Callable[[bytes], object] | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Open the shards of `plan` under root, dropping any left by a different plan.

        `reused` says whether earlier shards were kept (the plan matched). `owner`: the job
        and attempt; `check`: decodes a payload (raising if it is not one) so a shard that
        passes its checksum but not its decoder is redone too; `fence`: writes commit only
        while it is false (default: the calling context's, see `files.commit_fence`).
        """
        self.root = Path(root)
        self.plan = json.loads(json.dumps(plan, sort_keys=True))  # canonical, JSON-safe
        self.digest = plan_digest(self.plan)
        self.owner = owner or ShardOwner()
        self.stats = ShardStats()
        self._check = check
        self._fence = fence if fence is not None else current_fence()
        self._lock = threading.Lock()
        self._valid: dict[str, bool] = {}  # key -> checked this run (True: usable)
        self._written: set[str] = set()  # keys this run wrote
        plan_path = self.root / PLAN_FILE
        old: Any = None
        with contextlib.suppress(OSError, ValueError):
            old = json.loads(plan_path.read_text())
        self.reused = old == self.plan
        if not self.reused:
            if self._stopped():  # a run asked to stop (or abandoned) removes nothing either
                raise Fenced(f"shards under {self.root} not reset: its run was asked to stop")
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True, exist_ok=True)
            self._commit(PLAN_FILE, json.dumps(self.plan, sort_keys=True).encode())

    # -- files -------------------------------------------------------------------------------
    def _path(self, key: str, suffix: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"shard key {key!r} is not a safe file name")
        return self.root / f"{key}{suffix}"

    def _commit(self, name: str, data: bytes) -> None:
        tmp = self.root / f".{name}.partial"
        try:
            with tmp.open("wb") as f:
                f.write(data)
            commit(tmp, self.root / name, self._fence)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _header(self, key: str, payload: bytes) -> bytes:
        record = {
            "job": self.owner.job,
            "attempt": self.owner.attempt,
            "key": key,
            "plan": self.digest,
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        return MAGIC + json.dumps(record, sort_keys=True).encode() + b"\n"

    def _put(self, key: str, suffix: str, payload: bytes) -> None:
        path = self._path(key, suffix)
        self._commit(path.name, self._header(key, payload) + payload)
        with self._lock:
            self._valid[key] = True
            self._written.add(key)

    def _verified(self, key: str, suffix: str) -> bytes | None:
        """The payload if the shard is this job's, this key's and this plan's and whole."""
        path = self._path(key, suffix)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            return self._redo(key, path)
        record = _record(data)
        if record is None:
            return self._redo(key, path)
        meta, payload = record
        if (
            meta.get("key") != key
            or meta.get("job") != self.owner.job
            or meta.get("plan") != self.digest
            or meta.get("bytes") != len(payload)
            or meta.get("sha256") != hashlib.sha256(payload).hexdigest()
        ):
            return self._redo(key, path)
        with self._lock:
            known = key in self._valid
        if not known:
            if self._check is not None:
                try:
                    self._check(payload)
                except Exception:  # a decoder's error of any kind: the shard is not usable
                    return self._redo(key, path)
            with self._lock:
                if key not in self._valid:
                    self._valid[key] = True
                    if key not in self._written:
                        self.stats.reused += 1
                        attempt = meta.get("attempt")
                        if isinstance(attempt, int) and attempt < self.owner.attempt:
                            self.stats.reused_from_earlier_attempts += 1
        return payload

    def _stopped(self) -> bool:
        return self._fence is not None and self._fence()

    def _redo(self, key: str, path: Path) -> None:
        if not self._stopped():  # an abandoned run must not delete its retry's shards
            path.unlink(missing_ok=True)
        with self._lock:
            self._valid.pop(key, None)
            self._written.discard(key)
            self.stats.redone += 1
        return None

    # -- API ---------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> None:
        self._put(key, ".bin", data)

    def get_bytes(self, key: str) -> bytes | None:
        """The shard's payload, or None if it is missing or does not match (then removed)."""
        return self._verified(key, ".bin")

    def put_array(self, key: str, arr: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
        self._put(key, ".npy", buf.getvalue())

    def get_array(self, key: str) -> np.ndarray | None:
        """The shard, or None if it is missing or unusable (an unusable one is removed)."""
        payload = self._verified(key, ".npy")
        if payload is None:
            return None
        try:
            return np.load(io.BytesIO(payload), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return self._redo(key, self._path(key, ".npy"))

    def has(self, key: str) -> bool:
        """Whether a usable shard exists (checked once per run; a bad one is removed)."""
        with self._lock:
            if self._valid.get(key):
                return self._path(key, ".bin").is_file() or self._path(key, ".npy").is_file()
        return self._verified(key, ".bin") is not None or self._verified(key, ".npy") is not None

    def discard(self, key: str) -> None:
        """Drop a shard its reader found unusable: its work is redone."""
        for suffix in (".bin", ".npy"):
            path = self._path(key, suffix)
            if path.is_file():
                self._redo(key, path)


def _record(data: bytes) -> tuple[dict[str, Any], bytes] | None:
    if not data.startswith(MAGIC):
        return None
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + _MAX_HEADER)
    if end < 0:
        return None
    try:
        meta = json.loads(data[len(MAGIC) : end])
    except ValueError:
        return None
    if not isinstance(meta, dict):
        return None
    return meta, data[end + 1 :]
