"""A full disk under the data dir is one line naming it and the fix: 'No space left on device'
alone named nothing, and 'disk I/O error; move it aside' suggested the state was broken."""

from __future__ import annotations

import errno
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from tests.headless.helpers import one_job_config
from wsitui.cli import main
from wsitui.core import store as store_module
from wsitui.core.paths import DataDirLock, UnusableDir
from wsitui.core.store import Store, StoreError

FULL = Path("/dev/full")  # every write fails with ENOSPC (seen on a full tmpfs: the same line)


@pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full")
def test_a_lock_that_cannot_be_written_names_the_data_dir_and_the_fix(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "engine.lock").symlink_to(FULL)
    with pytest.raises(UnusableDir) as info:
        DataDirLock(data).acquire()
    message = str(info.value)  # (/dev/full refuses the truncate first: "Invalid argument")
    assert message.startswith(f"data dir {data} cannot be written (")
    assert message.endswith("); free space or fix its permissions, or use another --data-dir")


def test_run_on_a_full_data_dir_is_one_line_exit_2(tmp_path, monkeypatch, capsys, sample_slide):
    # The lock is the first write of a run: on a full disk it said "No space left on device".
    def full(lock: DataDirLock) -> None:
        raise lock._unusable(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    monkeypatch.setattr(DataDirLock, "acquire", full)
    config = one_job_config(tmp_path / "c.toml", sample_slide)
    assert main(["run", str(config), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"data dir {tmp_path / 'data'} cannot be written (No space left on device)" in err


def test_a_state_database_on_a_full_disk_says_the_disk_is_full(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "state.db").mkdir(parents=True)  # SQLite cannot open it
    with pytest.raises(StoreError, match="move it aside"):  # not full: the file is the problem
        Store(data / "state.db")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(store_module.shutil, "disk_usage", lambda p: usage(10, 10, 0))
    with pytest.raises(StoreError) as info:
        Store(data / "state.db")
    message = str(info.value)
    assert "the disk holding it is full; free space there (the state is kept)" in message
    assert "move it aside" not in message
    assert shutil.disk_usage is store_module.shutil.disk_usage
