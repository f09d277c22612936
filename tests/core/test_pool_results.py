"""A worker's result goes back through a file (core/pool_results.py): what crosses the pool's
pipe is a name small enough for one atomic write, the result or the exception comes back whole,
and the files and folders do not pile up. (The hang it prevents, a worker killed mid-send:
tests/cells/test_classical_workers.py.)"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait as mp_wait
from pathlib import Path

import numpy as np
import pytest

from wsitui.core import pool_results
from wsitui.core.pool_results import (
    ResultLost,
    discard,
    from_file,
    result_of,
    results_folder,
    to_file,
)


class _Unpicklable(Exception):
    """Pickles, but does not unpickle (its own reduce says so: a class that merely needs two
    arguments is rebuilt by tblib's reducers once distributed is imported, as in the suite)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return _cannot_rebuild, (str(self),)


def _cannot_rebuild(text: str) -> Exception:
    raise TypeError(f"cannot rebuild {text!r}")


def _raise(kind: str) -> None:
    if kind == "value":
        raise ValueError("bad tile")
    raise _Unpicklable("1+2")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    d.mkdir()
    return d


def test_a_result_comes_back_whole_and_its_file_goes(folder: Path) -> None:
    labels = np.arange(1024 * 1024, dtype=np.int32).reshape(1024, 1024)
    sent = to_file(folder, np.copy, labels)
    assert len(pickle.dumps(sent)) < select.PIPE_BUF  # one atomic write on the pipe
    got = from_file(sent)
    assert np.array_equal(got, labels)
    assert list(folder.iterdir()) == []


def test_an_exception_comes_back_with_the_workers_traceback(folder: Path) -> None:
    sent = to_file(folder, _raise, "value")
    assert sent[0] == "raised" and len(pickle.dumps(sent)) < select.PIPE_BUF
    with pytest.raises(ValueError, match="bad tile") as caught:
        from_file(sent)
    assert "in a worker process" in "".join(caught.value.__notes__)
    assert "_raise" in "".join(caught.value.__notes__)  # where it was raised
    with pytest.raises(RuntimeError, match=r"_Unpicklable: 1\+2"):
        from_file(to_file(folder, _raise, "odd"))  # named, not a failure to unpickle
    assert list(folder.iterdir()) == []


def test_a_result_that_cannot_be_written_is_said_in_one_line(folder: Path) -> None:
    sent = to_file(folder / "gone", np.zeros, 3)  # the folder removed (a cancel)
    assert sent[0] == "lost" and "gone" in sent[1]  # which folder
    with pytest.raises(ResultLost, match=r"could not hand its result back.*TMPDIR"):
        from_file(sent)


def test_folders_of_processes_that_are_gone_are_removed(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pool_results.tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    host = pool_results._host()
    left = tmp_path / f"{pool_results.PREFIX}{dead}-{host}-abc"
    left.mkdir()
    (left / "x.pickle").write_bytes(b"1")
    elsewhere = tmp_path / f"{pool_results.PREFIX}{dead}-another_host-abc"  # a shared /tmp
    elsewhere.mkdir()
    live = tmp_path / f"{pool_results.PREFIX}{os.getppid()}-{host}-def"  # a running process's
    live.mkdir()
    other = tmp_path / "wsitui-something-else"
    other.mkdir()
    mine = results_folder()
    assert mine.parent == tmp_path and mine.name.startswith(f"{pool_results.PREFIX}{os.getpid()}-")
    assert not left.exists() and live.exists() and other.exists() and elsewhere.exists()
    assert results_folder() != mine and mine.exists()  # this process's own are kept


class _BrokenPool:
    """Fake of the two ProcessPoolExecutor internals `result_of` reads (CPython's own names):
    a pool broken by a worker's death whose settling thread has ended."""

    _broken = "A child process terminated abruptly"
    _executor_manager_thread = None


def test_a_task_left_pending_in_a_broken_pool_is_not_waited_for_good() -> None:
    pending: Future[tuple[str, str]] = Future()  # nobody will ever settle it
    began = time.monotonic()
    with pytest.raises(BrokenProcessPool):
        result_of(_BrokenPool(), pending, poll=0.05)  # type: ignore[arg-type]
    assert time.monotonic() - began < 5
    done: Future[int] = Future()
    done.set_result(7)
    assert result_of(_BrokenPool(), done) == 7  # a settled one is still read


def test_the_files_of_a_failed_batchs_other_tiles_go_as_they_end(folder: Path) -> None:
    later: Future[tuple[str, str]] = Future()
    discard([later])
    sent = to_file(folder, np.zeros, 1000)
    later.set_result(sent)
    assert list(folder.iterdir()) == []


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def test_wait_gone_returns_when_the_processes_end_or_at_its_limit(tmp_path: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    long = ctx.Process(target=_sleep, args=(60,))
    long.start()
    try:
        began = time.monotonic()
        pool_results.wait_gone([long], 0.3)  # still running: back at the limit, not later
        assert 0.25 <= time.monotonic() - began < 5 and long.is_alive()
        folder = tmp_path / "r"
        folder.mkdir()
        pool_results.remove_when_gone(folder, [long])
        time.sleep(0.3)
        assert folder.is_dir()  # its worker may still write there
        long.kill()  # SIGKILL: no mask or handler a test process passed on can stop it
        began = time.monotonic()
        pool_results.wait_gone([long], 30)
        # Back once it ended, well before its limit. (Not `is_alive()`: once another thread of
        # the suite reaps the child, waitpid fails with ECHILD and it says True for good.)
        assert time.monotonic() - began < 20
        assert mp_wait([long.sentinel], timeout=0)  # and came back because it ended
        deadline = time.monotonic() + 10
        while folder.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not folder.exists()  # removed once the worker is gone
    finally:
        long.kill()
        long.join()
    with contextlib.suppress(ValueError):  # "still running": reaped by another thread
        long.close()
    began = time.monotonic()
    pool_results.wait_gone([long], 30)  # a closed Process object: long gone, no wait, no error
    assert time.monotonic() - began < 1
    assert pool_results.pool_processes(None) == []
