"""Every wait on a Dask scheduler has a deadline: a peer that accepts TCP and never answers
(a local socket stands in for a wedged scheduler or a proxy) fails the job in seconds with one
line that says how long it waited, instead of holding it PENDING forever."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from wsitui.core.executor import JobError
from wsitui.jobs.segment_cells.backends import dask as dask_backend
from wsitui.jobs.segment_cells.backends.dask import DaskClusters

pytest.importorskip("distributed")


@pytest.fixture
def silent_peer() -> Iterator[str]:
    """tcp://127.0.0.1:PORT that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for s in held:
            s.close()
        server.close()


def _connect(address: str) -> BaseException | None:
    """Connect in a thread; a hang fails the test instead of holding it."""
    got: list[BaseException | None] = []

    def go() -> None:
        clusters = DaskClusters()
        try:
            clusters.client(address)
            got.append(None)
        except BaseException as e:
            got.append(e)
        finally:
            clusters.close()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(60)  # the deadline is 5 s; 60 leaves room for two busy cores
    assert not thread.is_alive(), "connecting to a silent peer hung"
    return got[0]


def test_a_scheduler_that_accepts_and_never_answers_fails_in_seconds_with_one_line(silent_peer):
    error = _connect(silent_peer)
    assert isinstance(error, JobError)
    text = str(error)
    assert "\n" not in text
    assert f"dask scheduler {silent_peer} cannot be reached" in text
    assert f"no answer within {dask_backend.CONNECT_S:g} s" in text  # the wait it really made


def test_a_closed_port_says_so_at_once():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    error = _connect(f"tcp://127.0.0.1:{port}")
    assert isinstance(error, JobError) and "refused" in str(error).lower()
    assert "no answer within" not in str(error)  # not a timeout: no waiting claimed
