"""Library chatter stays off the terminal: known library warnings and Dask distributed's log
records go to the wsitui log (a file when asked), never onto stderr of a successful run; usage
mistakes are one line with a `--help` hint."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from tests.headless.helpers import assert_one_line_error, wsitui
from tests.slides.samples import sample_slide_path
from wsitui.observability.libraries import route_library_output
from wsitui.observability.logs import setup_logging


@pytest.fixture
def routed():
    """route_library_output() as a face runs it, undone afterwards (it is process-wide)."""
    names = ("py.warnings", "distributed", "distributed.client")
    loggers = [logging.getLogger(n) for n in names]
    before = [(lg, list(lg.handlers), lg.propagate) for lg in loggers]
    with warnings.catch_warnings():
        route_library_output()
        yield
    logging.captureWarnings(False)
    for logger, handlers, propagate in before:
        logger.handlers[:] = handlers
        logger.propagate = propagate


def test_a_distributed_traceback_goes_to_the_log_file_not_stderr(tmp_path, capfd, routed):
    pytest.importorskip("distributed")
    import wsitui.jobs.segment_cells.backends.dask  # noqa: F401  (imports distributed, which re-adds its handler)

    log = tmp_path / "w.log"
    for log_file in (None, log):  # a headless run without and with --log-file
        setup = setup_logging(log_file, errors_to_stderr=True)
        try:
            try:
                raise OSError("Timed out trying to connect to tcp://10.0.0.5:8786")
            except OSError:
                logging.getLogger("distributed.client").exception("Failed to reconnect")
            logging.getLogger("wsitui.engine").error("job w.cells FAILED: lost the scheduler")
        finally:
            setup.close()
    err = capfd.readouterr().err
    assert "Failed to reconnect" not in err and "Traceback" not in err
    assert "lost the scheduler" in err  # wsitui's own errors still reach stderr (no log file)
    text = log.read_text()
    assert "Failed to reconnect" in text and "Timed out trying to connect" in text


def test_a_known_library_warning_goes_to_the_log_file(tmp_path, capfd, routed):
    log = tmp_path / "w.log"
    setup = setup_logging(log, errors_to_stderr=True)
    try:
        warnings.warn("Sparse CSR tensor support is in beta state", UserWarning, stacklevel=1)
    finally:
        setup.close()
    assert "Sparse CSR" not in capfd.readouterr().err
    assert "Sparse CSR tensor support is in beta" in log.read_text()


def test_a_successful_run_prints_no_library_warning(tmp_path_factory, tmp_path):
    pytest.importorskip("torch")
    slide = sample_slide_path(tmp_path_factory, (1536, 1024), 5)
    config = tmp_path / "c.toml"
    config.write_text(
        '[[workflows]]\ntenant = "t"\nname = "w"\n  [[workflows.jobs]]\n  id = "cells"\n'
        f'  type = "SEGMENT_CELLS"\n  slide = "{slide}"\n'
        '  params = { model = "shipped", device = "cpu", tile_size = 512 }\n'
    )
    out = wsitui("run", config, "--data-dir", tmp_path / "d", "--quiet", timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # torch's "Sparse CSR tensor support is in beta" went to the log


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run",), "wsitui run: the following arguments are required: config"),
        (("bogus",), "invalid choice: 'bogus'"),
        (("--metrics-port", "x"), "'x' is not a port number"),
    ],
)
def test_a_usage_mistake_is_one_line_with_a_help_hint(args, expected, tmp_path: Path):
    line = assert_one_line_error(wsitui(*args, cwd=tmp_path), 2, expected)
    assert line.endswith("--help`")
