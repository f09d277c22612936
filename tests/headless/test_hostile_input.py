"""Hostile and unusual input from outside: one clear line, the documented exit code, no hang,
bounded memory, and no data harmed. Each test is one probe that once failed (issue #8).

Every subprocess has a timeout: a probe that hangs (a FIFO opened for reading) fails the test
instead of stalling CI.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.headless.helpers import REPO, assert_one_line_error, one_job_config, write_config, wsitui
from wsitui.core.paths import DataDirLock


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a file unwritable even for root (immutable attribute), or skip if we cannot."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)]).returncode != 0:
        pytest.skip("running as root without a working chattr: cannot make a file read-only")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


# ---- data dir, results dir ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["regular file", "fifo", "/dev/null"])
def test_data_dir_that_is_not_a_directory_is_one_line_exit_2(tmp_path, slides, kind):
    config = one_job_config(tmp_path / "c.toml", slides[1])
    if kind == "/dev/null":
        data = Path("/dev/null")
    else:
        data = tmp_path / "data"
        if kind == "fifo":
            os.mkfifo(data)
        else:
            data.write_bytes(b"my precious notes\n")
    before = data.stat()
    out = wsitui("run", config, "--data-dir", data, timeout=60)
    assert_one_line_error(out, 2, str(data), "not a directory")
    after = data.stat()
    assert (after.st_mode, after.st_size) == (before.st_mode, before.st_size)
    if kind == "regular file":
        assert data.read_bytes() == b"my precious notes\n"
        assert after.st_mtime_ns == before.st_mtime_ns


def test_out_that_cannot_be_used_is_refused_before_anything_runs(tmp_path, slides):
    config = one_job_config(tmp_path / "c.toml", slides[1])
    out_file = tmp_path / "results.txt"
    out_file.write_text("not a directory\n")
    data = tmp_path / "data"
    out = wsitui("run", config, "--data-dir", data, "--out", out_file / "sub")
    assert_one_line_error(out, 2, "results dir", "results.txt", "not a directory")
    assert not (data / "state.db").exists()  # no job ran and none was stored as failed


def test_a_file_in_place_of_a_tenants_results_folder_fails_the_job_naming_it(tmp_path, slides):
    """`results/<tenant>` a file: the job failed with a raw "NotADirectoryError: [Errno 20]
    ...". It fails naming the file in the way and the fix, and the file is untouched."""
    config = one_job_config(tmp_path / "c.toml", slides[1])
    data = tmp_path / "data"
    (data / "results").mkdir(parents=True)
    (data / "results" / "t").write_text("mine\n")
    out = wsitui("run", config, "--data-dir", data, timeout=60)
    assert out.returncode == 1, out.stderr
    said = out.stdout + out.stderr
    assert f"{data / 'results' / 't'} is a file, not a folder; move it aside" in said, said
    assert "Errno" not in said and "Traceback" not in said
    assert (data / "results" / "t").read_text() == "mine\n"


def test_second_run_on_a_busy_data_dir_is_one_line_exit_2(tmp_path, slides):
    config = one_job_config(tmp_path / "c.toml", slides[1])
    data = tmp_path / "data"
    lock = DataDirLock(data)
    lock.acquire()  # as a first `wsitui run` would
    try:
        out = wsitui("run", config, "--data-dir", data, timeout=60)
    finally:
        lock.release()
    assert_one_line_error(
        out,
        2,
        "in use by another wsitui process",
        str(os.getpid()),
        f"wsitui status --data-dir {data}",
    )
    assert not (data / "state.db").exists()


def test_busy_data_dir_found_only_when_the_engine_starts_is_one_line_exit_2(
    tmp_path, slides, capsys, monkeypatch
):
    """The lock is taken between the early probe and the engine start (a race)."""
    from wsitui.cli import main

    config = one_job_config(tmp_path / "c.toml", slides[1])
    data = tmp_path / "data"
    lock = DataDirLock(data)
    lock.acquire()
    monkeypatch.setattr(DataDirLock, "probe", lambda self: None)  # the probe saw it free
    try:
        code = main(["run", str(config), "--data-dir", str(data), "--quiet"])
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "in use by another wsitui process" in err, err


# ---- state.db ----------------------------------------------------------------------------------


def test_read_only_state_db_when_a_workflow_is_added_is_one_line_exit_2(tmp_path, slides):
    data = tmp_path / "data"
    config = one_job_config(tmp_path / "c.toml", slides[1])
    assert wsitui("run", config, "--data-dir", data, "--quiet").returncode == 0
    more = tmp_path / "more.toml"
    more.write_text(
        config.read_text().replace('name = "w"', 'name = "w2"')
    )  # a new workflow: it has to be written
    db = data / "state.db"
    before = digest(db)
    with read_only(db):
        out = wsitui("run", more, "--data-dir", data, timeout=60)
    assert_one_line_error(out, 2, "state.db")
    assert digest(db) == before


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory: pytest.TempPathFactory, slides: tuple[Path, Path]) -> Path:
    """A data dir after one successful run (copy it before changing it)."""
    tmp = tmp_path_factory.mktemp("stored")
    config = one_job_config(tmp / "c.toml", slides[1])
    data = tmp / "data"
    assert wsitui("run", config, "--data-dir", data, "--quiet").returncode == 0
    return data


@pytest.mark.parametrize(
    "corruption",
    ["UPDATE jobs SET state = 'EXPLODED'", "UPDATE jobs SET params = '{not json'"],
    ids=["unknown_state", "bad_params_json"],
)
@pytest.mark.parametrize("command", ["run", "status"])
def test_corrupt_state_rows_are_one_line_exit_2(tmp_path, slides, stored_run, corruption, command):
    data = tmp_path / "data"
    shutil.copytree(stored_run, data)
    db = sqlite3.connect(data / "state.db")
    db.execute(corruption)
    db.commit()
    db.close()
    before = digest(data / "state.db")
    if command == "run":
        config = one_job_config(tmp_path / "c.toml", slides[1])
        out = wsitui("run", config, "--data-dir", data, timeout=60)
    else:
        out = wsitui("status", "--data-dir", data, timeout=60)
    assert_one_line_error(out, 2, "state.db")
    assert digest(data / "state.db") == before


def test_status_on_an_empty_state_db_changes_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "state.db").touch()
    out = wsitui("status", "--data-dir", data, timeout=60)
    assert_one_line_error(out, 2, "state.db")
    assert (data / "state.db").stat().st_size == 0  # no schema was created
    assert sorted(p.name for p in data.iterdir()) == ["state.db"]


def test_status_on_a_data_dir_that_is_a_file_is_one_line_exit_2(tmp_path):
    data = tmp_path / "data"
    data.write_text("x")
    assert_one_line_error(wsitui("status", "--data-dir", data), 2, "not a directory")


def test_status_on_a_data_dir_that_is_a_symlink_loop_says_so(tmp_path):
    # It said "no wsitui state in ...; run a config first", as for an empty dir.
    data = tmp_path / "data"
    data.symlink_to(data)
    out = wsitui("status", "--data-dir", data)
    assert_one_line_error(out, 2, "cannot be checked (Too many levels of symbolic links)")


# ---- config file -------------------------------------------------------------------------------


def test_config_nested_500_levels_deep_is_one_line_exit_2(tmp_path):
    config = write_config(tmp_path / "deep.toml", "x = " + "[" * 500 + "]" * 500 + "\n")
    out = wsitui("run", config, "--data-dir", tmp_path / "data", timeout=60)
    assert_one_line_error(out, 2, "deep.toml", "nested")


def test_config_that_is_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    out = wsitui("run", fifo, "--data-dir", tmp_path / "data", timeout=60)
    assert_one_line_error(out, 2, "FIFO")


def test_config_of_dev_zero_is_refused_without_reading_it(tmp_path):
    out = wsitui("run", "/dev/zero", "--data-dir", tmp_path / "data", timeout=60)
    assert_one_line_error(out, 2, "/dev/zero", "device")


def test_oversized_config_is_refused(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 600_000)  # 6 MB of comments
    out = wsitui("run", big, "--data-dir", tmp_path / "data", timeout=60)
    assert_one_line_error(out, 2, "big.toml", "too large")


# ---- event log ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "/dev/full"])
def test_events_to_a_non_regular_file_is_refused_without_hanging(tmp_path, slides, kind):
    events = Path("/dev/full") if kind == "/dev/full" else tmp_path / "events.jsonl"
    if kind == "fifo":
        os.mkfifo(events)
    config = one_job_config(tmp_path / "c.toml", slides[1])
    data = tmp_path / "data"
    out = wsitui("run", config, "--data-dir", data, "--events", events, timeout=60)
    assert_one_line_error(out, 2, "event log", str(events))
    assert not (data / "state.db").exists()


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("--events", "not a wsitui event log"),
        # `--log-file victim.svs` appended log lines to the slide, as `--events` once did.
        ("--log-file", "--log-file {victim} exists and is not a wsitui log"),
    ],
)
def test_an_output_option_pointing_at_a_slide_leaves_the_slide_untouched(
    tmp_path, slides, option, says
):
    victim = tmp_path / "victim.svs"
    shutil.copy(slides[1], victim)
    before = digest(victim)
    config = one_job_config(tmp_path / "c.toml", slides[1])
    data = tmp_path / "data"
    out = wsitui("run", config, "--data-dir", data, option, victim)
    assert_one_line_error(out, 2, "victim.svs", says.format(victim=victim))
    assert digest(victim) == before
    assert not (data / "state.db").exists()


def test_log_file_appends_to_the_last_runs_log(tmp_path, slides):
    config = one_job_config(tmp_path / "c.toml", slides[1])
    log = tmp_path / "run.log"
    counts = []
    for data, fmt in (("d1", []), ("d2", ["--log-json"])):  # text, then JSON lines after it
        args = ["--data-dir", tmp_path / data, "--log-file", log, "--quiet", *fmt]
        out = wsitui("run", config, *args)
        assert out.returncode == 0, out.stderr
        counts.append(len(log.read_text().splitlines()))
    lines = log.read_text().splitlines()
    assert all(" tenant=" in line for line in lines[: counts[0]])
    assert any(json.loads(line)["tenant"] == "t" for line in lines[counts[0] :])


def test_events_append_to_an_existing_event_log(tmp_path, slides):
    config = one_job_config(tmp_path / "c.toml", slides[1])
    events = tmp_path / "events.jsonl"
    first = wsitui("run", config, "--data-dir", tmp_path / "d1", "--events", events, "--quiet")
    assert first.returncode == 0, first.stderr
    lines = events.read_text().splitlines()
    second = wsitui("run", config, "--data-dir", tmp_path / "d2", "--events", events, "--quiet")
    assert second.returncode == 0, second.stderr
    both = events.read_text().splitlines()
    assert both[: len(lines)] == lines and len(both) > len(lines)
    assert all("event" in json.loads(line) for line in both)


# ---- samples -----------------------------------------------------------------------------------


def test_sample_whose_parent_is_a_regular_file_is_one_line_exit_2(tmp_path, slides):
    blocker = tmp_path / "samples"
    blocker.write_text("a file where the samples directory would go\n")
    config = write_config(
        tmp_path / "c.toml",
        '[[samples]]\npath = "samples/demo.svs"\nsize = "1024x1024"\n'
        + one_job_config(tmp_path / "unused.toml", "samples/demo.svs").read_text(),
    )
    out = wsitui("run", config, "--data-dir", tmp_path / "data", timeout=60)
    assert_one_line_error(out, 2, "samples[0]", "demo.svs")
    assert blocker.read_text() == "a file where the samples directory would go\n"


def test_tui_refuses_a_sample_whose_parent_is_a_file_with_one_line(tmp_path, capsys):
    from wsitui.tui.main import tui_main

    (tmp_path / "samples").write_text("x")
    config = write_config(
        tmp_path / "c.toml", '[[samples]]\npath = "samples/demo.svs"\nsize = "1024x1024"\n'
    )
    code = tui_main(config, tmp_path / "data", None)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "samples[0]" in err and "None" not in err, err


def test_config_sample_never_overwrites_a_users_truth_file(tmp_path, slides):
    truth = tmp_path / "demo.truth.npz"
    truth.write_bytes(b"the user's own annotations")
    config = write_config(
        tmp_path / "c.toml",
        '[[samples]]\npath = "demo.svs"\nsize = "1024x1024"\n'
        + one_job_config(tmp_path / "unused.toml", "demo.svs").read_text(),
    )
    out = wsitui("run", config, "--data-dir", tmp_path / "data", timeout=60)
    assert_one_line_error(out, 2, "demo.truth.npz")
    assert truth.read_bytes() == b"the user's own annotations"
    assert not (tmp_path / "demo.svs").exists()


def test_config_sample_that_exists_is_reused_not_rewritten(tmp_path, slides):
    slide = tmp_path / "demo.svs"
    shutil.copy(slides[1], slide)
    before = (digest(slide), slide.stat().st_mtime_ns)
    config = write_config(
        tmp_path / "c.toml",
        '[[samples]]\npath = "demo.svs"\nsize = "1024x1024"\nseed = 9\n'
        + one_job_config(tmp_path / "unused.toml", "demo.svs").read_text(),
    )
    out = wsitui("run", config, "--data-dir", tmp_path / "data", "--quiet")
    assert out.returncode == 0, out.stderr
    assert (digest(slide), slide.stat().st_mtime_ns) == before


def test_sample_command_refuses_to_overwrite_without_force(tmp_path):
    out_path = tmp_path / "notes.svs"
    out_path.write_text("my notes\n")
    out = wsitui("sample", out_path, "--size", "1024x1024", timeout=60)
    assert_one_line_error(out, 2, "notes.svs")
    assert out_path.read_text() == "my notes\n"
    forced = wsitui("sample", out_path, "--size", "1024x1024", "--force", timeout=120)
    assert forced.returncode == 0, forced.stderr
    assert out_path.read_bytes()[:4] in (b"II*\x00", b"MM\x00*")  # now a TIFF slide


# ---- names and paths with control characters ---------------------------------------------------


def test_newline_and_escape_in_a_path_print_as_one_escaped_line(tmp_path):
    weird = tmp_path / "bad\nname\x1b[31m.toml"
    out = wsitui("run", weird, "--data-dir", tmp_path / "data")
    line = assert_one_line_error(out, 2, "config file not found")
    assert "bad\\nname\\x1b[31m.toml" in line


def test_escape_codes_in_a_workflow_name_print_escaped(tmp_path, slides):
    config = one_job_config(
        tmp_path / "c.toml",
        slides[1],
        name="evil\\u001b]0;pwned\\u0007\\nsecond line",
        extra='  depends_on = ["ghost"]\n',
    )
    out = wsitui("run", config, "--data-dir", tmp_path / "data")
    # Such a name is refused now (test_hostile_names.py); the line that names it is escaped.
    line = assert_one_line_error(out, 2, "workflows[0].name")
    assert "\x07" not in out.stderr and "\\x1b]0;pwned\\x07\\nsecond line" in line


# ---- reruns ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("  params = { tile_size = 256 }\n", "params"),
        ('  branch = "other"\n', "branch"),
    ],
)
def test_rerun_with_a_changed_stored_job_is_refused_before_anything_runs(
    tmp_path, slides, stored_run, change, field
):
    data = tmp_path / "data"
    shutil.copytree(stored_run, data)
    before = digest(data / "state.db")
    config = one_job_config(tmp_path / "c.toml", slides[1], extra=change)
    out = wsitui("run", config, "--data-dir", data, timeout=60)
    assert_one_line_error(
        out, 2, "workflows[0] (t/w)", "job 'a'", f"changed its {field}", "rename the workflow"
    )
    assert digest(data / "state.db") == before


def test_a_stored_job_with_params_an_earlier_version_read_laxly_resumes(
    tmp_path, slides, stored_run
):
    """An earlier version stored `tile_size = "512"` as the string; the config now says 512
    (strict params refuse the string). Before: "job 'a' changed its params ... rename the
    workflow" (exit 2), the stored queue lost; now it resumes and the row is stored as 512."""
    data = tmp_path / "data"
    shutil.copytree(stored_run, data)
    db = sqlite3.connect(data / "state.db")
    db.execute("""UPDATE jobs SET params = '{"tile_size": "512"}'""")
    db.commit()
    db.close()
    config = one_job_config(
        tmp_path / "c.toml", slides[1], extra="  params = { tile_size = 512 }\n"
    )
    out = wsitui("run", config, "--data-dir", data, "--quiet", timeout=60)
    assert out.returncode == 0, out.stderr
    db = sqlite3.connect(data / "state.db")
    assert db.execute("SELECT params, attempt FROM jobs").fetchall() == [('{"tile_size": 512}', 1)]
    db.close()


def test_store_failure_while_submitting_is_one_line_exit_2(tmp_path, slides, capsys, monkeypatch):
    """The disk fills between the checks and the first write: still one line, never a group."""
    import wsitui.session.session as session_module
    from wsitui.cli import main
    from wsitui.core.store import StoreError

    def disk_full(*args: object, **kwargs: object) -> str:
        raise StoreError("state database state.db: write failed (database or disk is full)")

    monkeypatch.setattr(session_module, "submit_or_resume", disk_full)
    config = one_job_config(tmp_path / "c.toml", slides[1])
    code = main(["run", str(config), "--data-dir", str(tmp_path / "data"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err == "wsitui: state database state.db: write failed (database or disk is full)\n"


def test_state_files_that_are_fifos_are_refused_without_hanging(tmp_path, slides):
    config = one_job_config(tmp_path / "c.toml", slides[1])
    for name in ("state.db", "engine.lock"):
        data = tmp_path / f"data-{name}"
        data.mkdir()
        os.mkfifo(data / name)
        out = wsitui("run", config, "--data-dir", data, timeout=60)
        assert_one_line_error(out, 2, name, "not a regular file")
    status = wsitui("status", "--data-dir", tmp_path / "data-state.db", timeout=60)
    assert_one_line_error(status, 2, "state.db", "not a regular file")


def test_run_on_an_empty_state_db_starts_afresh(tmp_path, slides):
    """A zero-byte state.db (e.g. touched by hand) holds nothing: the run creates the state."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "state.db").touch()
    config = one_job_config(tmp_path / "c.toml", slides[1])
    out = wsitui("run", config, "--data-dir", data, "--quiet")
    assert out.returncode == 0, out.stderr
    assert (data / "state.db").stat().st_size > 0


def test_output_to_a_closed_pipe_stops_quietly(stored_run):
    """`wsitui status --json | head -1`: the reader leaves; no traceback on the terminal."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsitui.cli", "status", "--data-dir", str(stored_run), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    proc.stdout.close()  # before the interpreter has even started: every write fails
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert err == b""


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[paths]\ndata_dir = "x\\u0000y"\n', "paths.data_dir"),
        ('[[samples]]\npath = "x\\u0000y.svs"\n', "samples[0].path"),
        ("", "workflows[0].jobs[0].slide"),
    ],
    ids=["data_dir", "sample", "slide"],
)
def test_nul_in_a_config_path_is_one_line_exit_2(tmp_path, toml, key):
    config = one_job_config(tmp_path / "c.toml", "a\\u0000b.svs")
    config.write_text(
        toml + config.read_text().replace("a\\u0000b.svs", "s.svs" if toml else "a\\u0000b.svs")
    )
    out = wsitui("run", config, "--data-dir", tmp_path / "data")
    assert_one_line_error(out, 2, key, "NUL")


@pytest.mark.parametrize(
    ("csv", "expected"),
    [
        ("path\na\x00b.svs\n", "line 2 has a NUL byte in its `path`; fix that line"),
        ("path,slide_id\ns.svs,mine\n", "a column `slide_id`, which summary.csv writes itself"),
        ("path,state\ns.svs,done\n", "a column `state`, which summary.csv writes itself"),
        ("path,site,site\ns.svs,a,b\n", "two columns named `site`; rename one"),
        ("fifo", "is a FIFO (named pipe), not a regular file"),
    ],
    ids=["nul", "slide_id", "state", "twice", "fifo"],
)
def test_a_cohort_csv_that_cannot_be_a_study_table_is_one_line_exit_2(tmp_path, csv, expected):
    """A NUL byte in a CSV's path reached only the internal-error net (exit 70); a `slide_id`
    column overwrote the real slide ids in summary.csv (and `state` was there twice); a FIFO
    was "not found". Each is one line naming the CSV, exit 2, before anything runs."""
    listing = tmp_path / "list.csv"
    if csv == "fifo":
        os.mkfifo(listing)
    else:
        listing.write_text(csv)
    config = write_config(
        tmp_path / "c.toml",
        '[[workflows]]\ntenant = "t"\nname = "w"\nslides = "list.csv"\n'
        '[[workflows.jobs]]\nid = "a"\ntype = "TISSUE_MASK"\n',
    )
    out = wsitui("run", config, "--data-dir", tmp_path / "data", timeout=60)
    assert_one_line_error(out, 2, str(listing), expected)
    assert not (tmp_path / "data" / "state.db").exists()


def test_tui_refuses_an_unsafe_tenant_with_one_line(tmp_path):
    out = wsitui("--tenant", "../../etc", "--data-dir", tmp_path / "data", timeout=60)
    assert_one_line_error(out, 2, "tenant '../../etc' is not allowed")


def test_a_state_write_failing_mid_run_is_one_line_and_the_rerun_resumes(
    tmp_path, slides, monkeypatch, capsys
):
    """A disk that fills mid-run: the engine's next commit fails inside a job's task. That
    came out of the task group as a 100-line traceback (and the store's own ROLLBACK hid the
    reason); it is one line, exit 2, and the same command then resumes."""
    from wsitui.cli import main
    from wsitui.core.store import Store

    data = tmp_path / "data"
    config = one_job_config(tmp_path / "c.toml", slides[1])
    real = Store._write

    def full(db: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("database or disk is full")  # SQLite's words for it

    def full_once_a_job_started(self: Store, statements) -> None:  # type: ignore[no-untyped-def]
        real(self, full if any((data / "results").rglob(".attempt")) else statements)

    monkeypatch.setattr(Store, "_write", full_once_a_job_started)
    assert main(["run", str(config), "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert "cannot be written (database or disk is full)" in err[0], err
    assert "the same command resumes" in err[0]
    monkeypatch.setattr(Store, "_write", real)
    assert main(["run", str(config), "--data-dir", str(data)]) == 0
