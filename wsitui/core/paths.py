"""Where wsitui keeps its state and results, and the guard that keeps ids inside it."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import stat
from pathlib import Path
from typing import IO

from wsitui.core.records import check_safe_id


def path_arg(text: str) -> Path:
    """An argparse `type` for every path option: never empty. `--data-dir "$DIR"` with DIR
    unset was Path(""), the current folder: state.db, results/ or a trained model landed
    wherever the shell stood."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            'the path is empty (an unset shell variable?); give a path ("." is this folder)'
        )
    return Path(text)


def default_data_dir() -> Path:
    """XDG data dir: $XDG_DATA_HOME/wsitui, else ~/.local/share/wsitui."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wsitui"


def results_dir(results_root: Path, tenant: str, workflow_id: str, job_key: str) -> Path:
    """`<results>/<tenant>/<workflow>/<job>`; refuses any id that could escape it, and a path
    resolved outside the root (e.g. a symlinked tenant dir pointing elsewhere)."""
    return ResultsDirs(results_root)(tenant, workflow_id, job_key)


class ResultsDirs:
    """`results_dir` for many jobs under one root (a summary of thousands): the root and each
    workflow's dir are resolved once, then a job's dir costs one `lstat`, and only a symlinked
    one is resolved and checked. Same answers and refusals as `results_dir`, at a moment's
    state of the tree: make one per summary, not one for good."""

    def __init__(self, results_root: Path) -> None:
        self.root = results_root.resolve()
        self._workflows: dict[tuple[str, str], Path] = {}

    def __call__(self, tenant: str, workflow_id: str, job_key: str) -> Path:
        for kind, value in (("tenant", tenant), ("workflow id", workflow_id), ("job id", job_key)):
            check_safe_id(kind, value)
        parent = self._workflows.get((tenant, workflow_id))
        if parent is None:
            parent = self._inside((self.root / tenant / workflow_id).resolve())
            self._workflows[(tenant, workflow_id)] = parent
        path = parent / job_key
        return self._inside(path.resolve()) if path.is_symlink() else path

    def _inside(self, path: Path) -> Path:
        if not path.is_relative_to(self.root):
            raise ValueError(f"results path {path} is outside {self.root}")
        return path


class UnusableDir(Exception):
    """A directory wsitui must write into cannot be used; one line naming it and the fix."""


def check_writable_dir(path: Path, what: str) -> None:
    """Raise UnusableDir unless `path` is a writable directory or can be created as one.

    Creates nothing: the nearest existing ancestor must be a directory we may write into.
    Never opens anything, so a FIFO or a device in the way is named, not waited on.
    """
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # missing, or under a non-directory
        st = None
    except OSError as exc:
        raise UnusableDir(
            f"{what} {path} cannot be checked ({exc.strerror}); fix the path"
        ) from None
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise UnusableDir(
                f"{what} {path} is {file_kind(st.st_mode)}, not a directory; give a directory path"
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise UnusableDir(f"{what} {path} is not writable; give a directory you can write")
        return
    parent = path.parent
    while True:
        try:
            pst = parent.stat()
            break
        except (FileNotFoundError, NotADirectoryError):
            if parent == parent.parent:
                raise UnusableDir(f"{what} {path} cannot be created; fix the path") from None
            parent = parent.parent
        except OSError as exc:
            raise UnusableDir(
                f"{what} {path} cannot be created ({exc.strerror}); fix the path"
            ) from None
    if not stat.S_ISDIR(pst.st_mode):
        raise UnusableDir(
            f"{what} {path} cannot be created: {parent} is {file_kind(pst.st_mode)}, "
            "not a directory; fix the path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UnusableDir(
            f"{what} {path} cannot be created: {parent} is not writable; give another path"
        )


def file_kind(mode: int) -> str:
    """What a `stat` mode is, as messages say it: 'a directory', 'a FIFO (named pipe)', ...
    (for a path that is not the kind of file it should be: the data dir, a config, a log)."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "an unusual kind of file"


class DataDirInUse(Exception):
    pass


class DataDirLock:
    """One engine per data dir: a second process would mark the first one's jobs interrupted."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "engine.lock"
        self._file: IO[str] | None = None

    def probe(self) -> None:
        """Raise DataDirInUse now if another process holds the lock (creates nothing)."""
        if not self.path.is_file():
            return  # no engine ever ran here, or the data dir does not exist yet
        try:
            f = self.path.open("r")
        except OSError:
            return  # acquire() will say what is wrong
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = f.read(32).strip() or "?"
            raise DataDirInUse(self._in_use(owner)) from None
        finally:
            f.close()  # closing drops the probe's shared lock

    def _in_use(self, owner: str) -> str:
        return (
            f"data dir {self.path.parent} is in use by another wsitui process (pid {owner}); "
            f"`wsitui status --data-dir {self.path.parent}` shows its progress; wait for it "
            "or use another --data-dir"
        )

    def acquire(self) -> None:
        """Take the lock (raise DataDirInUse if another process has it) and write our pid;
        a data dir that cannot be written (a full disk) raises UnusableDir naming it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = self.path.open("a+")
        except OSError as exc:
            raise self._unusable(exc) from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "?"
            f.close()
            raise DataDirInUse(self._in_use(owner)) from None
        try:
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
        except OSError as exc:  # e.g. ENOSPC: it said only "No space left on device"
            fcntl.flock(f, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):  # closing flushes the same write again
                f.close()
            raise self._unusable(exc) from None
        self._file = f

    def _unusable(self, exc: OSError) -> UnusableDir:
        return UnusableDir(
            f"data dir {self.path.parent} cannot be written ({exc.strerror or exc}); free "
            "space or fix its permissions, or use another --data-dir"
        )

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
