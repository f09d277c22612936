"""`wsitui run` as a user runs it: a subprocess on generated slides."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.core.oracle import check, missing_from_log, read_events
from tests.headless.helpers import (
    REPO,
    assert_one_line_error,
    bad_after_fine_config,
    one_job_config,
    write_config,
    wsitui,
)


def demo_config(tmp: Path, a: Path, b: Path, *, workers: int = 2, users: int = 1) -> Path:
    return write_config(
        tmp / "run.toml",
        f"""
[scheduler]
max_workers = {workers}
max_active_users = {users}

[[workflows]]
tenant = "alice"
name = "demo"
  [[workflows.jobs]]
  id = "mask"
  type = "TISSUE_MASK"
  slide = "{a}"
  branch = "A"
  [[workflows.jobs]]
  id = "fine"
  type = "TISSUE_MASK"
  slide = "{a}"
  branch = "B"
  depends_on = ["mask"]
  params = {{ tile_size = 256 }}
  [[workflows.jobs]]
  id = "other"
  type = "TISSUE_MASK"
  slide = "{b}"
  branch = "A"

[[workflows]]
tenant = "bob"
name = "demo"
  [[workflows.jobs]]
  id = "mask"
  type = "TISSUE_MASK"
  slide = "{b}"
""",
    )


def test_run_writes_outputs_summary_and_a_replayable_event_log(tmp_path, slides):
    config = demo_config(tmp_path, *slides)
    data, events = tmp_path / "data", tmp_path / "events.jsonl"
    out = wsitui("run", config, "--data-dir", data, "--events", events, "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["exit_code"] == 0
    jobs = [j for w in summary["workflows"] for j in w["jobs"]]
    assert len(jobs) == 4 and {j["state"] for j in jobs} == {"SUCCEEDED"}
    for job in jobs:
        results = Path(job["results_dir"])
        assert results.is_relative_to(data / "results")
        for name in ("manifest.json", "tiles.json", "tissue_mask.png", "preview.png"):
            assert (results / name).is_file(), (job["key"], name)
        assert job["tiles_done"] == job["tiles_total"] > 0
    # max_active_users = 1: bob only ran after alice had finished everything.
    oracle = check(read_events([events]), max_workers=2, max_active_users=1)
    assert oracle.violations == [] and oracle.starts == 4
    log = [json.loads(line) for line in events.read_text().splitlines()]
    admitted = [e["tenant"] for e in log if e["event"] == "tenant_admitted"]
    assert admitted == ["alice", "bob"]

    again = wsitui("run", config, "--data-dir", data, "--json")  # resumes: nothing redone
    assert again.returncode == 0, again.stderr
    db = sqlite3.connect(data / "state.db")
    starts = db.execute("SELECT COUNT(*) FROM transitions WHERE state='RUNNING'").fetchone()[0]
    db.close()
    assert starts == 4

    status = wsitui("status", "--data-dir", data, "--json")
    assert status.returncode == 0
    assert sorted(w["tenant"] for w in json.loads(status.stdout)) == ["alice", "bob"]


def test_failed_job_exits_1_and_blocks_only_its_dependents(tmp_path, slides):
    config = bad_after_fine_config(tmp_path, slides[0], slides[1])
    out = wsitui("run", config, "--data-dir", tmp_path / "data", "--json")
    assert out.returncode == 1, out.stderr
    jobs = {j["key"]: j for j in json.loads(out.stdout)["workflows"][0]["jobs"]}
    assert jobs["bad"]["state"] == "FAILED"
    assert "broken.svs" in jobs["bad"]["error"] and "\n" not in jobs["bad"]["error"]
    assert jobs["after"]["state"] == "PENDING" and jobs["after"]["blocked"]
    assert jobs["fine"]["state"] == "SUCCEEDED"


def succeeded_so_far(db_path: Path) -> int:
    """Jobs SUCCEEDED in a running process's state.db; 0 until its tables exist.

    The file appears before the engine has created its schema: reading it then fails with
    "no such table", which means nothing has finished yet, not an error.
    """
    if not db_path.exists():
        return 0
    db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM jobs WHERE state='SUCCEEDED'").fetchone()[0]
    except sqlite3.DatabaseError:  # no such table (yet), or the database is locked
        return 0
    finally:
        db.close()


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path, slides):
    jobs = "".join(
        f"""
  [[workflows.jobs]]
  id = "m{i}"
  type = "TISSUE_MASK"
  slide = "{slides[0]}"
  params = {{ tile_size = 64 }}
"""
        for i in range(30)
    )
    config = write_config(
        tmp_path / "c.toml", f'[[workflows]]\ntenant = "t"\nname = "serial"\n{jobs}'
    )
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsitui.cli", "run", str(config), "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and done < 3:
        time.sleep(0.1)
        done = succeeded_so_far(data / "state.db")
    assert done >= 3
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Run the same command again to resume" in out
    assert "Traceback" not in err
    db = sqlite3.connect(data / "state.db")
    states = [s for (s,) in db.execute("SELECT state FROM jobs")]
    db.close()
    assert "RUNNING" not in states and "PENDING" in states
    finished_before = states.count("SUCCEEDED")

    rerun = wsitui("run", config, "--data-dir", data, "--quiet")
    assert rerun.returncode == 0, rerun.stderr
    db = sqlite3.connect(data / "state.db")
    completed = db.execute(
        "SELECT job_id, COUNT(*) FROM transitions WHERE state='SUCCEEDED' GROUP BY job_id"
    ).fetchall()
    db.close()
    assert len(completed) == 30 and {n for _, n in completed} == {1}
    assert finished_before >= 3


def running_so_far(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM jobs WHERE state='RUNNING'").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0
    finally:
        db.close()


def test_sigkill_and_rerun_log_every_transition_recovery_included(tmp_path, slides):
    """#15.2: what the engine commits while it opens (the killed run's jobs "interrupted", then
    started again) is in the event log: the log replays to exactly the committed transitions."""
    workflows = "".join(
        f"""
[[workflows]]
tenant = "{tenant}"
name = "w"
"""
        + "".join(
            f"""  [[workflows.jobs]]
  id = "m{i}"
  type = "TISSUE_MASK"
  slide = "{slides[0]}"
  branch = "b{i % 2}"
  params = {{ tile_size = 64 }}
"""
            for i in range(4)
        )
        for tenant in ("t1", "t2")
    )
    config = write_config(tmp_path / "c.toml", f"[scheduler]\nmax_workers = 4\n{workflows}")
    data, events = tmp_path / "data", tmp_path / "events.jsonl"
    args = ["run", str(config), "--data-dir", str(data), "--events", str(events), "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsitui.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and running_so_far(data / "state.db") < 2:
        time.sleep(0.05)
    proc.kill()  # SIGKILL while jobs run: they are RUNNING on disk
    proc.wait(timeout=30)
    assert running_so_far(data / "state.db") >= 2
    rerun = wsitui(*args)
    assert rerun.returncode == 0, rerun.stderr
    log = list(read_events([events]))
    assert missing_from_log(log, data / "state.db") == []
    assert check(log, max_workers=4, max_active_users=3).violations == []


BAD_CONFIGS: dict[str, tuple[str, str]] = {
    # name: (config body with {slide}/{text}/{empty}/{cut} placeholders, expected message part)
    "bad_toml": ("[[workflows]\n", "invalid TOML"),
    "unknown_top_key": ("colour = 1\n", "colour: Extra inputs are not permitted"),
    "unknown_job_key": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{slide}"\nslid="x"\n',
        "workflows[0].jobs[0].slid",
    ),
    "unknown_job_type": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="SEGMENT"\n'
        'slide="{slide}"\n',
        "workflows[0].jobs[0].type",
    ),
    "cycle": (
        '[[workflows]]\ntenant="t"\nname="w"\n'
        '[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\nslide="{slide}"\ndepends_on=["b"]\n'
        '[[workflows.jobs]]\nid="b"\ntype="TISSUE_MASK"\nslide="{slide}"\ndepends_on=["a"]\n',
        "dependency cycle",
    ),
    "missing_slide": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="nowhere.svs"\n',
        "nowhere.svs",
    ),
    "duplicate_ids": (
        '[[workflows]]\ntenant="t"\nname="w"\n'
        '[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\nslide="{slide}"\n'
        '[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\nslide="{slide}"\n',
        "used twice",
    ),
    "negative_workers": ("[scheduler]\nmax_workers = -1\n", "scheduler.max_workers"),
    "zero_users": ("[scheduler]\nmax_active_users = 0\n", "scheduler.max_active_users"),
    "workers_not_int": ('[scheduler]\nmax_workers = "four"\n', "scheduler.max_workers"),
    "id_with_slash": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a/b"\ntype="TISSUE_MASK"\n'
        'slide="{slide}"\n',
        "job id 'a/b' is not allowed",
    ),
    "id_dotdot": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid=".."\ntype="TISSUE_MASK"\n'
        'slide="{slide}"\n',
        "job id '..' is not allowed",
    ),
    "tenant_escape": (
        '[[workflows]]\ntenant="../root"\nname="w"\n[[workflows.jobs]]\nid="a"\n'
        'type="TISSUE_MASK"\nslide="{slide}"\n',
        "tenant '../root' is not allowed",
    ),
    "branch_with_space": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{slide}"\nbranch="my branch"\n',
        "branch 'my branch' is not allowed",
    ),
    "slide_not_an_image": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{text}"\n',
        "notes.svs",
    ),
    "zero_byte_slide": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{empty}"\n',
        "empty.svs",
    ),
    "truncated_slide": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{cut}"\n',
        "cut.svs",
    ),
    "unknown_dependency": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{slide}"\ndepends_on=["ghost"]\n',
        "unknown job 'ghost'",
    ),
    "missing_type": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\nslide="{slide}"\n',
        "workflows[0].jobs[0].type: Field required",
    ),
    "no_jobs": ('[[workflows]]\ntenant="t"\nname="w"\njobs=[]\n', "workflows[0].jobs"),
    "no_tenant": (
        '[[workflows]]\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{slide}"\n',
        "workflows[0].tenant: Field required",
    ),
    "bad_param": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{slide}"\nparams={{ tile_size = -5 }}\n',
        "tile_size",
    ),
    "unknown_param": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{slide}"\nparams={{ tilesize = 5 }}\n',
        "tilesize",
    ),
    "segment_cells_bad_device": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\n'
        'type="SEGMENT_CELLS"\nslide="{slide}"\nparams={{ device = "tpu" }}\n',
        "device 'tpu' is not one of auto, cpu, cuda, cuda:N, mps",
    ),
    "segment_cells_unknown_model": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\n'
        'type="SEGMENT_CELLS"\nslide="{slide}"\nparams={{ model = "no_such_model" }}\n',
        "model 'no_such_model' is unknown",
    ),
    "bad_image_protocol": ('[ui]\nimage_protocol = "ascii"\n', "ui.image_protocol"),
    "bad_sample_size": (
        '[[samples]]\npath = "s.svs"\nsize = "big"\n[[workflows]]\ntenant="t"\nname="w"\n'
        '[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\nslide="s.svs"\n',
        "samples",
    ),
    "duplicate_workflow_names": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{slide}"\n'
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="b"\ntype="TISSUE_MASK"\n'
        'slide="{slide}"\n',
        "repeats tenant 't' and name 'w'",
    ),
    "no_workflows": ("[scheduler]\nmax_workers = 2\n", "no [[workflows]] to run"),
    "events_is_a_directory": (  # run with --events naming a directory
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\n'
        'id="a"\ntype="TISSUE_MASK"\nslide="{slide}"\n',
        "event log",
    ),
    "symlink_loop_slide": (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{loop}"\n',
        "cannot be resolved",
    ),
    "second_workflow_bad": (
        '[[workflows]]\ntenant="t"\nname="ok"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{slide}"\n'
        '[[workflows]]\ntenant="u"\nname="w"\n[[workflows.jobs]]\nid="a"\ntype="TISSUE_MASK"\n'
        'slide="{slide}"\ndepends_on=["a"]\n',
        "workflows[1]",
    ),
}


def test_malformed_configs_and_inputs_exit_2_with_one_line_and_nothing_run(tmp_path, slides):
    text = tmp_path / "notes.svs"
    text.write_text("these are my notes, not a slide\n")
    (tmp_path / "empty.svs").write_bytes(b"")
    cut = tmp_path / "cut.svs"
    cut.write_bytes(slides[0].read_bytes()[: slides[0].stat().st_size // 2])
    loop = tmp_path / "loop.svs"
    loop.symlink_to(loop)
    fill = {
        "slide": slides[1],
        "text": text,
        "empty": tmp_path / "empty.svs",
        "cut": cut,
        "loop": loop,
    }
    cases: list[tuple[str, Path, str]] = []
    for name, (body, expected) in BAD_CONFIGS.items():
        config = tmp_path / f"{name}.toml"
        config.write_text(body.format(**fill))
        cases.append((name, config, expected))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    cases.append(("binary_config", binary, "not a text file"))
    cases.append(("missing_config", tmp_path / "nope.toml", "config file not found"))
    assert len(cases) >= 20

    def check(case: tuple[str, Path, str]) -> str | None:
        name, config, expected = case
        data, events = tmp_path / f"data-{name}", tmp_path / f"events-{name}.jsonl"
        events_arg = tmp_path if name == "events_is_a_directory" else events
        out = wsitui("run", config, "--data-dir", data, "--events", events_arg)
        lines = out.stderr.strip().splitlines()
        problems = []
        if out.returncode != 2:
            problems.append(f"exit {out.returncode}")
        if len(lines) != 1 or "Traceback" in out.stderr:
            problems.append(f"stderr not one line: {out.stderr!r}")
        elif expected not in lines[0]:
            problems.append(f"{expected!r} not in {lines[0]!r}")
        if (data / "state.db").exists() or events.exists():
            problems.append("something ran")
        return f"{name}: {'; '.join(problems)}" if problems else None

    with ThreadPoolExecutor(4) as pool:
        failures: Sequence[str | None] = list(pool.map(check, cases))
    assert [f for f in failures if f] == []


def test_version_and_help():
    assert wsitui("--version").stdout.startswith("wsitui ")
    for args in (["--help"], ["run", "--help"], ["status", "--help"], ["sample", "--help"]):
        out = wsitui(*args)
        assert out.returncode == 0 and "usage: wsitui" in out.stdout


def test_rerun_adds_new_jobs_in_dependency_order_and_data_dir_works_before_subcommand(
    tmp_path, slides
):
    data = tmp_path / "data"
    one = (
        '[[workflows]]\ntenant="t"\nname="w"\n[[workflows.jobs]]\nid="a"\n'
        f'type="TISSUE_MASK"\nslide="{slides[1]}"\n'
    )
    config = write_config(tmp_path / "c.toml", one)
    assert wsitui("--data-dir", data, "run", config, "--quiet").returncode == 0
    assert (data / "state.db").exists()  # the top-level --data-dir was honoured
    # New jobs listed before the new job they depend on.
    more = one + (
        f'[[workflows.jobs]]\nid="c"\ntype="TISSUE_MASK"\nslide="{slides[1]}"\ndepends_on=["b"]\n'
        f'[[workflows.jobs]]\nid="b"\ntype="TISSUE_MASK"\nslide="{slides[1]}"\n'
    )
    write_config(config, more)
    out = wsitui("run", config, "--data-dir", data, "--json")
    assert out.returncode == 0, out.stderr
    states = {j["key"]: j["state"] for j in json.loads(out.stdout)["workflows"][0]["jobs"]}
    assert states == {"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED"}


def two_workflows(path: Path, slide: Path, *, head: str = "", w1: str = "", w2: str = "") -> Path:
    def jobs(names: str, extra: str) -> str:
        return "".join(
            f'  [[workflows.jobs]]\n  id = "{n}"\n  type = "TISSUE_MASK"\n  slide = "{slide}"\n'
            + extra
            for n in names
        )

    return write_config(
        path,
        head
        + '[[workflows]]\ntenant = "t"\nname = "w1"\n'
        + jobs("ab", w1)
        + '[[workflows]]\ntenant = "t"\nname = "w2"\n'
        + jobs("cd", w2),
    )


def stored_workflows(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT COUNT(*) FROM workflows").fetchone()[0]
    finally:
        con.close()


def test_a_config_refused_by_limits_submits_nothing(tmp_path, slides):
    """#15.8: the first workflow fits, the second does not: nothing of the config starts. On an
    empty data dir no wait lets the config's 4 jobs under a bound of 2: the line said "queue
    full: 2 jobs queued (limit 2 per tenant); wait for some to finish; ... or retry later"."""
    config = two_workflows(
        tmp_path / "c.toml", slides[1], head="[limits]\nmax_queued_per_tenant = 2\n"
    )
    out = wsitui("run", config, "--data-dir", tmp_path / "data")
    line = assert_one_line_error(
        out,
        3,
        "tenant t: 4 jobs submitted together can never fit the limit of 2",
        "raise [limits] max_queued_per_tenant to at least 4",
        "nothing of the config was submitted",
    )
    assert "retry later" not in line and "wait for some" not in line
    assert stored_workflows(tmp_path / "data" / "state.db") == 0


def test_a_stored_workflow_that_no_longer_matches_skips_only_itself(tmp_path, slides):
    """#21.1: one workflow's stored twin changed; it is skipped in one line, the rest run."""
    data = tmp_path / "data"
    first = wsitui("run", two_workflows(tmp_path / "c.toml", slides[1]), "--data-dir", data)
    assert first.returncode == 0, first.stderr
    changed = two_workflows(tmp_path / "c2.toml", slides[1], w1="  params = { tile_size = 256 }\n")
    with changed.open("a") as f:  # and one new job in the workflow that still matches
        f.write(
            f'  [[workflows.jobs]]\n  id = "e"\n  type = "TISSUE_MASK"\n  slide = "{slides[1]}"\n'
        )
    out = wsitui("run", changed, "--data-dir", data, "--json", "--quiet")
    line = assert_one_line_error(out, 1, "workflows[0] (t/w1) skipped", "changed its params")
    assert "rename the workflow" in line
    summary = json.loads(out.stdout)
    assert [w["name"] for w in summary["workflows"]] == ["w2"]
    assert summary["skipped"] == [line.removeprefix("wsitui: ")]
    states = {j["key"]: j["state"] for j in summary["workflows"][0]["jobs"]}
    assert states == {"c": "SUCCEEDED", "d": "SUCCEEDED", "e": "SUCCEEDED"}


def test_the_closing_summary_says_which_workflows_did_not_run(tmp_path, slides):
    """The skip was said once, on stderr, when the run began; the closing summary listed
    only what ran, all SUCCEEDED, and the run exited 1 with no word of why at its end."""
    data = tmp_path / "data"
    first = wsitui("run", two_workflows(tmp_path / "c.toml", slides[1]), "--data-dir", data)
    assert first.returncode == 0, first.stderr
    changed = two_workflows(tmp_path / "c2.toml", slides[1], w1="  params = { tile_size = 256 }\n")
    out = wsitui("run", changed, "--data-dir", data)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    (at,) = [i for i, line in enumerate(lines) if line == "not run:"]
    assert lines[at + 1].startswith("  ⚠ workflows[0] (t/w1) skipped: job "), lines
    assert "rename the workflow" in lines[at + 1] and at + 2 == len(lines), lines


def test_status_finds_the_results_where_the_run_wrote_them(tmp_path, slides):
    """`--out` (or `[paths] results`) put a run's results elsewhere, and `wsitui status` looked
    for them under DATA_DIR/results unless given the same `--out`: every job's results_dir
    wrong, and the cells counts and notes read from them missing. state.db keeps the root."""
    config = one_job_config(tmp_path / "c.toml", slides[1])
    data, out = tmp_path / "data", tmp_path / "elsewhere"
    run = wsitui("run", config, "--data-dir", data, "--out", out, "--quiet")
    assert run.returncode == 0, run.stderr
    status = wsitui("status", "--data-dir", data, "--json")
    assert status.returncode == 0, status.stderr
    (job,) = json.loads(status.stdout)[0]["jobs"]
    assert Path(job["results_dir"]).is_relative_to(out.absolute())
    assert (Path(job["results_dir"]) / "manifest.json").is_file()
    given = wsitui("status", "--data-dir", data, "--json", "--out", tmp_path / "other")
    (job,) = json.loads(given.stdout)[0]["jobs"]  # --out still wins
    assert Path(job["results_dir"]).is_relative_to(tmp_path / "other")
