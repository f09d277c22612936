"""The job writers' shared life (`common/staged.py`): outputs appear only on a clean exit, and a
failure, a cancel or a fenced commit leaves neither an output nor a hidden temporary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from wsitui.jobs.common.files import Fenced
from wsitui.jobs.common.staged import Finishing, StagedFiles
from wsitui.jobs.measure_cells.write import MeasureWriter
from wsitui.jobs.segment_cells.write import CellWriter

CELL_FILES = {"cells.geojson", "cells.geojson.gz", "cells.csv", "cells.parquet"}
MEASURE_FILES = {"cells.geojson", "measurements.parquet"}


def _cells(out: Path, fence: Callable[[], bool] | None = None) -> StagedFiles:
    return CellWriter(out, job_id="j", mpp=0.5, gz=True, fence=fence)


def _measure(out: Path, fence: Callable[[], bool] | None = None) -> StagedFiles:
    return MeasureWriter(out, fence=fence)


WRITERS = [(_cells, CELL_FILES), (_measure, MEASURE_FILES)]


@pytest.mark.parametrize(("make", "files"), WRITERS)
def test_a_clean_exit_puts_every_output_in_place_and_no_temporary(tmp_path, make, files):
    with make(tmp_path):
        assert {p.name for p in tmp_path.iterdir()} <= {f".{n}.partial" for n in files}
    assert {p.name for p in tmp_path.iterdir()} == files


@pytest.mark.parametrize(("make", "files"), WRITERS)
def test_an_error_in_the_block_leaves_nothing_and_is_raised_as_it_was(tmp_path, make, files):
    with pytest.raises(ZeroDivisionError), make(tmp_path):
        assert any(tmp_path.iterdir())  # the temporaries are being written
        _ = 1 / 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("make", "files"), WRITERS)
def test_a_run_fenced_between_two_renames_leaves_no_temporary(tmp_path, make, files):
    commits = iter([False])  # the first rename commits, then the run is asked to stop
    with pytest.raises(Fenced), make(tmp_path, lambda: next(commits, True)):
        pass
    left = {p.name for p in tmp_path.iterdir()}
    assert len(left) == 1 and left <= files  # the one committed output, nothing hidden


def test_finishing_closes_on_a_clean_exit_and_aborts_on_an_exception():
    calls: list[str] = []

    class Probe(Finishing):
        def close(self) -> None:
            calls.append("close")

        def abort(self) -> None:
            calls.append("abort")

    with Probe() as p:
        assert isinstance(p, Probe)
    with pytest.raises(KeyError), Probe():
        raise KeyError("x")
    assert calls == ["close", "abort"]
