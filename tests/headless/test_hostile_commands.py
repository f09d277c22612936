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


def test_an_unforeseen_error_is_one_line_naming_a_file_with_the_traceback(tmp_path):
    """The net under every one-line error: a bug reached by input no check foresaw (it was a
    NUL byte in a cohort CSV's path) printed a 36-line traceback. It is one line, exit 70,
    and the traceback is kept in a file the line names."""
    import subprocess
    import sys

    from tests.headless.helpers import REPO

    script = (
        "import sys, wsitui.cli as cli, wsitui.headless.status as st\n"
        "def boom(*a, **k): raise ValueError('embedded null byte')\n"
        "st.status = boom\n"
        "cli._PROGRAM = True\n"
        "sys.exit(cli.main(['status', '--data-dir', sys.argv[1]]))\n"
    )
    env = {"PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    line = assert_one_line_error(out, 70, "wsitui status: internal error (ValueError: embedded")
    (saved,) = tmp_path.glob("wsitui-error-*.txt")
    assert str(saved) in line
    assert "Traceback" in saved.read_text() and "boom" in saved.read_text()


def test_a_config_sample_path_under_a_file_says_how_to_fix_it(tmp_path):
    """A `[[samples]]` path under a file said 'cannot check slide ...: Not a directory' and no
    more; the line now names what to change, and the file in the way is untouched."""
    (tmp_path / "notes.txt").write_text("mine\n")
    path = "notes.txt/x.svs"
    config = write_config(
        tmp_path / "c.toml",
        f'[[samples]]\npath = "{path}"\nsize = "1024x1024"\n[[workflows]]\ntenant = "t"\n'
        f'name = "w"\n[[workflows.jobs]]\nid = "a"\ntype = "TISSUE_MASK"\nslide = "{path}"\n',
    )
    out = wsitui("run", config, "--data-dir", tmp_path / "data", timeout=60)
    assert_one_line_error(out, 2, "a part of its folder path is a file")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--log-file", "{config}"], "--log-file {config} is the config file too"),
        (["--events", "{log}", "--log-file", "{log}"], "is the --events file too"),
        (["--events", "{config}"], "the --events file {config} is the config file too"),
    ],
)
def test_two_options_naming_one_file_are_refused(tmp_path, slides, flags, expected):
    """`wsitui run c.toml --log-file c.toml` appended log lines to the config, and the next
    run could not read it; `--events` and `--log-file` on one file interleaved them, and the
    event log could no longer be replayed. One line, exit 2, nothing written."""
    config = write_config(
        tmp_path / "c.toml",
        f'[[workflows]]\ntenant = "t"\nname = "w"\n[[workflows.jobs]]\nid = "a"\n'
        f'type = "TISSUE_MASK"\nslide = "{slides[1]}"\n',
    )
    before = config.read_bytes()
    log = tmp_path / "one.log"
    args = [f.format(config=config, log=log) for f in flags]
    out = wsitui("run", config, "--data-dir", tmp_path / "data", *args, timeout=60)
    assert_one_line_error(out, 2, expected.format(config=config))
    assert config.read_bytes() == before
    assert not log.exists() and not (tmp_path / "data").exists()


def test_sample_under_a_file_says_it_is_a_file(tmp_path):
    """`wsitui sample notes.txt/x.svs` said "directory 'notes.txt' does not exist" of a file
    that exists: it says the file is in the way, and leaves it alone."""
    (tmp_path / "notes.txt").write_text("mine\n")
    out = wsitui("sample", "notes.txt/x.svs", cwd=tmp_path, timeout=60)
    assert_one_line_error(out, 2, "'notes.txt' is a file, not a directory")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    missing = wsitui("sample", "nodir/x.svs", cwd=tmp_path, timeout=60)
    assert_one_line_error(missing, 2, "directory 'nodir' does not exist")


def test_sample_help_and_its_mpp_refusal_offer_the_same_values(tmp_path):
    """`wsitui sample --help` said "0.25 (40x)" while `--mpp 0.3` was refused with "use 0.499
    (20x) or 0.2495 (40x)": a user could not tell which 40x value is the one."""
    import re

    helped = " ".join(wsitui("sample", "--help").stdout.split())
    out = wsitui("sample", tmp_path / "x.svs", "--mpp", "0.3")
    line = assert_one_line_error(out, 2, "mpp 0.3 is not offered")
    offered = re.compile(r"(\d+(?:\.\d+)?) \((20x|40x)")
    assert offered.findall(helped) == offered.findall(line) == [("0.499", "20x"), ("0.2495", "40x")]
    tail = line.split("; ", 1)[1]  # what is taken as them, worded the same
    assert tail in helped, (tail, helped)
    assert not (tmp_path / "x.svs").exists()
