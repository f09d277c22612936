"""A path that is the wrong kind of file is named by its kind, the same way everywhere: the data
dir check, the event log check and the config reader share core.paths.file_kind."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from wsitui.core.eventlog import EventLogError, check_event_log
from wsitui.core.paths import UnusableDir, check_writable_dir, file_kind
from wsitui.session.config import ConfigError, read_config_bytes


@pytest.fixture
def unix_socket() -> Iterator[Path]:
    """A listening Unix socket (in a short dir: socket paths are limited to ~100 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="wsk", dir="/tmp"))
    path = folder / "s"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    try:
        yield path
    finally:
        sock.close()
        path.unlink(missing_ok=True)
        folder.rmdir()


def test_each_kind_has_its_name(tmp_path: Path, unix_socket: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "file").write_text("x")
    kinds = {
        p: file_kind(p.stat().st_mode)
        for p in (tmp_path, tmp_path / "file", fifo, Path("/dev/null"), unix_socket)
    }
    assert list(kinds.values()) == [
        "a directory",
        "a regular file",
        "a FIFO (named pipe)",
        "a device",
        "a socket",
    ]


def test_a_socket_is_called_a_socket_by_every_check(unix_socket: Path):
    with pytest.raises(EventLogError, match="is a socket; give a regular file path"):
        check_event_log(unix_socket)  # it said "is not a regular file" before
    with pytest.raises(ConfigError, match="is a socket; a config is a TOML file"):
        read_config_bytes(unix_socket)
    with pytest.raises(UnusableDir, match="is a socket, not a directory"):
        check_writable_dir(unix_socket, "data dir")
