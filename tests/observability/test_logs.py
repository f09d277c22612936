"""Structured logs: ids on every line, and nothing on the terminal unless asked."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from wsitui.core.events import JobStateChanged, TenantAdmitted
from wsitui.core.records import Job, JobState
from wsitui.observability.logs import JobLog, LogError, setup_logging


def job(state: JobState) -> Job:
    return Job(
        id="wf1.mask", key="mask", workflow_id="wf1", tenant="alice",
        job_type="TISSUE_MASK", slide="s.svs", branch="A", depends_on=(), params={},
        state=state, error="boom" if state is JobState.FAILED else None,
    )  # fmt: skip


def test_without_a_file_nothing_reaches_the_terminal(capfd):
    setup = setup_logging(None)  # the TUI without --log-file
    try:
        logging.getLogger("wsitui").error("an engine error while the TUI draws")
        JobLog()(JobStateChanged(1.0, job(JobState.FAILED), JobState.RUNNING, "failed"))
    finally:
        setup.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_text_lines_carry_the_ids_even_when_not_about_a_job(tmp_path: Path):
    path = tmp_path / "w.log"
    setup = setup_logging(path)
    try:
        log = JobLog()
        log(JobStateChanged(1.0, job(JobState.FAILED), JobState.RUNNING, "failed: boom"))
        log(TenantAdmitted(2.0, "bob"))
        logging.getLogger("wsitui").warning("event listener failed")
    finally:
        setup.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert (
        " WARNING tenant=alice workflow=wf1 job=wf1.mask job mask FAILED: failed: boom" in lines[0]
    )
    assert " INFO tenant=bob workflow=- job=- tenant bob admitted" in lines[1]
    assert " tenant=- workflow=- job=- event listener failed" in lines[2]


def test_json_lines_and_the_logger_is_restored_after(tmp_path: Path):
    path = tmp_path / "w.jsonl"
    logger = logging.getLogger("wsitui")
    before = (logger.level, logger.propagate, list(logger.handlers))
    setup = setup_logging(path, as_json=True)
    try:
        JobLog()(JobStateChanged(1.0, job(JobState.SUCCEEDED), JobState.RUNNING, "completed"))
    finally:
        setup.close()
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["tenant"] == "alice" and line["workflow_id"] == "wf1"
    assert line["job_id"] == "wf1.mask" and line["state"] == "SUCCEEDED"
    assert line["level"] == "info" and line["ts"].endswith("Z")
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_an_unwritable_log_file_is_one_line(tmp_path: Path):
    with pytest.raises(LogError, match=r"--log-file .*: its folder does not exist"):
        setup_logging(tmp_path / "missing" / "w.log")
    with pytest.raises(LogError, match="not a regular file"):
        setup_logging(tmp_path)


@pytest.mark.parametrize("as_json", [False, True])
def test_a_log_is_appended_to_by_the_next_run_but_another_file_is_refused(
    tmp_path: Path, as_json: bool
):
    """`--log-file slide.svs` appended log lines to the slide. An existing file is appended
    to only when it is empty or a wsitui log (text or JSON); anything else is one line."""
    path = tmp_path / "w.log"
    for _ in range(2):  # the second run appends to the first run's log
        setup = setup_logging(path, as_json=as_json)
        try:
            logging.getLogger("wsitui").warning("a run")
        finally:
            setup.close()
    assert len(path.read_text().splitlines()) == 2
    (tmp_path / "empty.log").write_bytes(b"")
    setup_logging(tmp_path / "empty.log", as_json=as_json).close()
    for foreign in (b"II*\x00\x08\x00\x00\x00", b"my notes\n", b'{"ts": 1}\n'):
        other = tmp_path / "other.txt"
        other.write_bytes(foreign)
        with pytest.raises(LogError, match=r"exists and is not a wsitui log; give a new file"):
            setup_logging(other, as_json=as_json)
        assert other.read_bytes() == foreign


def test_headless_without_log_options_still_shows_engine_errors_only(capfd):
    setup = setup_logging(None, errors_to_stderr=True)
    try:
        JobLog()(JobStateChanged(1.0, job(JobState.FAILED), JobState.RUNNING, "failed"))
        logging.getLogger("wsitui").error("event listener failed and was removed")
    finally:
        setup.close()
    err = capfd.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].endswith("event listener failed and was removed")


def test_a_log_file_whose_disk_fills_stops_with_one_line_for_the_face(tmp_path: Path, capfd):
    """A full disk under --log-file printed Python's "--- Logging error ---" traceback for
    every line, and the close that flushed the rest raised: `wsitui run` ended as an internal
    error (exit 70) after its jobs had run."""
    import os

    path = tmp_path / "run.log"
    setup = setup_logging(path)
    log = logging.getLogger("wsitui")
    log.info("before the disk filled")
    (handler,) = setup.handlers
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, handler.stream.fileno())  # every write from now on: ENOSPC
    os.close(full)
    for i in range(3):
        log.warning("line %d", i)
    setup.close()  # flushing what is buffered fails too: said, not raised
    assert setup.error == (
        f"--log-file {path}: writing failed (No space left on device); log lines after that "
        "are missing from it"
    )
    assert capfd.readouterr().err == ""
    assert "before the disk filled" in path.read_text()
