"""Hostile input to the commands other than `run` (serve, status), from outside: one line,
exit 2, no hang. Each test is one probe that once went wrong (hostile2 round)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.headless.helpers import assert_one_line_error, write_config, wsitui


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing config", "config file not found"),
        ("binary config", "not a text file"),
        ("bad value", "scheduler.max_workers"),
        ("data dir is a file", "not a directory"),
    ],
)
def test_serve_refuses_what_every_tab_would_fail_on_before_serving(tmp_path, case, expected):
    """`wsitui serve --config missing.toml` started serving, printed its URL and left the error
    to each browser tab (a test waiting for it hung until killed). It is one line, exit 2."""
    config = tmp_path / "c.toml"
    args: list[str | Path] = ["serve", "--port", "0", "--config", config]
    if case == "binary config":
        config.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    elif case == "bad value":
        write_config(config, '[scheduler]\nmax_workers = "four"\n')
    elif case == "data dir is a file":
        write_config(config, "")
        (tmp_path / "data").write_text("not a dir")
        args += ["--data-dir", tmp_path / "data"]
    out = wsitui(*args, timeout=60)
    assert_one_line_error(out, 2, "wsitui serve: ", expected)


def test_serve_on_an_unknown_remote_host_is_one_line(tmp_path):
    """With --allow-remote, the 'listening beyond this machine' warning came first, then the
    error that it could not listen at all: two lines for one mistake."""
    out = wsitui("serve", "--host", "no such host!", "--allow-remote", "--port", "0", timeout=60)
    assert_one_line_error(out, 2, "unknown address")
