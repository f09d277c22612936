"""Writing generated files without harming anything the project did not make.

* `check_target(path, ours, force)`: a path may be written when nothing is there, or a
  regular file that `ours(path)` recognises as one the project made, or any regular file with
  `force=True`. Never a directory, symbolic link, FIFO, socket or device, even with force
  (as root, "overwriting" /dev/null or a FIFO would be a disaster or hang).
* `AtomicFile`: the new file is written under no name at all (Linux `O_TMPFILE`) and linked into
  place with a rename at the end, so a reader sees the old file or the whole new one, and a
  killed process (even SIGKILL) leaves nothing behind. Where `O_TMPFILE` cannot be linked it
  falls back to a hidden `.NAME.<pid>.*.partial` file in the same directory, removed on any
  exception; one left by a SIGKILL is removed by the next write of the same name.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from wsitui.slides.errors import SlideError, quoted

_FIXES = {
    errno.ENOTDIR: "a part of its folder path is a file, not a folder: fix the path",
    errno.EACCES: "fix the folder's permissions or choose another place",
}


def check_target(path: Path, ours: Callable[[Path], bool], force: bool, what: str) -> None:
    """SlideError (one line) unless writing `path` harms nothing (see the module docstring)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as e:
        fix = _FIXES.get(e.errno, "fix the path")
        raise SlideError(f"cannot check {what} {quoted(path)}: {e.strerror or e}; {fix}") from e
    if stat.S_ISLNK(st.st_mode):
        raise SlideError(
            f"{what} {quoted(path)} is a symbolic link; wsitui never writes through or over "
            "one: remove the link or choose another name"
        )
    if stat.S_ISDIR(st.st_mode):
        raise SlideError(f"{what} {quoted(path)} is a directory; give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise SlideError(
            f"{what} {quoted(path)} is not a regular file (a FIFO, socket or device); wsitui "
            "never writes into one, even with --force: choose another name"
        )
    if force or ours(path):
        return
    raise SlideError(
        f"{what} {quoted(path)} already exists and was not made by wsitui sample; move it "
        "away, choose another name, or replace it on purpose with --force"
    )


_linkable: dict[int, bool] = {}  # st_dev -> can an O_TMPFILE file be linked into a name there


def _link_unnamed(fd: int, dest: Path) -> None:
    os.link(f"/proc/self/fd/{fd}", dest, follow_symlinks=True)


def _unnamed_file(directory: Path, mode: int) -> int | None:
    """An O_TMPFILE descriptor in `directory`, or None where that cannot later get a name
    (no O_TMPFILE, or linking it fails, as on some sandboxed or network file systems)."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        return None
    try:
        dev = directory.stat().st_dev
        if dev not in _linkable:
            probe_fd = os.open(directory, flag | os.O_RDWR, 0o600)
            probe = directory / f".wsitui-probe.{os.getpid()}"
            try:
                _link_unnamed(probe_fd, probe)
                probe.unlink()
                _linkable[dev] = True
            except OSError:
                _linkable[dev] = False
            finally:
                os.close(probe_fd)
        return os.open(directory, flag | os.O_RDWR, mode) if _linkable[dev] else None
    except OSError:
        return None


def _remove_stale(dest: Path) -> None:
    """Remove `.NAME.<pid>.*.partial` files of processes that are gone (killed mid-write)."""
    for leftover in dest.parent.glob(f".{glob_escape(dest.name)}.*.partial"):
        pid_text = leftover.name[len(dest.name) + 2 :].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                leftover.unlink()
        except OSError:
            pass  # alive, but not ours to signal: leave it


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


class AtomicFile:
    """`with AtomicFile(dest) as out: write to out.file; out.commit()`: dest appears whole, or
    not at all (leaving the block without commit() discards the new file)."""

    def __init__(self, dest: Path, mode: int = 0o644) -> None:
        self.dest = Path(dest)
        self._mode = mode
        self._tmp_name: Path | None = None  # the fallback's visible temporary name
        self._file: IO[bytes] | None = None
        self._committed = False

    @property
    def file(self) -> IO[bytes]:
        assert self._file is not None, "use AtomicFile in a with block"
        return self._file

    def __enter__(self) -> Self:
        parent = self.dest.parent
        fd = _unnamed_file(parent, self._mode)
        if fd is None:
            _remove_stale(self.dest)
            prefix = f".{self.dest.name}.{os.getpid()}."
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=".partial", dir=parent)
            self._tmp_name = Path(name)
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, self._mode & ~umask)
        raw = io.FileIO(fd, "r+")
        raw.name = str(self.dest)  # type: ignore[misc]  # libraries (tifffile) want a str name
        self._file = io.BufferedRandom(raw)
        return self

    def commit(self) -> None:
        """Flush and move the file into place (call inside the with block, when complete)."""
        f = self._file
        assert f is not None, "commit() outside the with block"
        f.flush()
        os.fsync(f.fileno())
        if self._tmp_name is None:
            # Give the unnamed file a hidden name, then rename it over dest atomically.
            link = self.dest.with_name(f".{self.dest.name}.{os.getpid()}.partial")
            link.unlink(missing_ok=True)
            _link_unnamed(f.fileno(), link)
            self._tmp_name = link
        self._tmp_name.replace(self.dest)
        self._tmp_name = None
        self._committed = True

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._file is not None:
                # Closing flushes what is buffered: on a full disk that raises too, and the
                # temporary file must go all the same (a `.NAME.*.partial` was left behind).
                self._file.close()
        finally:
            if self._tmp_name is not None:
                with contextlib.suppress(OSError):
                    self._tmp_name.unlink()

    def __repr__(self) -> str:
        return f"<AtomicFile {self.dest} committed={self._committed}>"
