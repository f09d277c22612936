"""Scheduling scenarios, round 5: classical SEGMENT_CELLS jobs on worker processes
(`classical_pool.py`) through the real `wsitui run`, checked with the strict oracle and from
/proc: several jobs with workers at once for several tenants, one waiting (the same cells as a
serial run with `workers = 1`); no worker process left after the run, a SIGTERM, a Ctrl-C to
the process group or a SIGKILL, and the restart resumes to the same cells; a Ctrl-C that
reaches a worker while it starts (README: Scheduling rules, SEGMENT_CELLS `workers`, The
classical model on every core)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.core.oracle import check, missing_from_log, read_events
from tests.headless.helpers import REPO
from tests.procs import live_processes
from tests.scenarios.test_cli_tenant_queue import admitted, assert_by_the_rules

# (tenant, [(job id, branch, slide key)]); slides: "s" 2048x1536 (24 tissue tiles of 256 px),
# "t" 2048x1536 of another seed (36).
Work = Sequence[tuple[str, Sequence[tuple[str, str, str]]]]
THREE_TENANTS: Work = [
    ("ann", [("a1", "A", "s"), ("a2", "B", "t")]),
    ("bob", [("b1", "main", "t")]),
    ("cat", [("c1", "main", "s")]),  # waits: two tenant slots
]


@pytest.fixture(scope="module")
def cell_slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.slides.samples import sample_slide_path

    return {
        "s": sample_slide_path(tmp_path_factory, (2048, 1536), 3),
        "t": sample_slide_path(tmp_path_factory, (2048, 1536), 4),
    }


def write_config(
    where: Path, slides: dict[str, Path], work: Work, *, workers: int, max_workers: int = 3
) -> Path:
    out = [
        f"[scheduler]\nmax_workers = {max_workers}\nmax_active_users = 2\n"
        f'[paths]\ndata_dir = "data"\nevents = "ev.jsonl"\n'
    ]
    for tenant, jobs in work:
        out.append(f'[[workflows]]\ntenant = "{tenant}"\nname = "w"\n')
        for key, branch, slide in jobs:
            out.append(
                f'  [[workflows.jobs]]\n  id = "{key}"\n  type = "SEGMENT_CELLS"\n'
                f'  slide = "{slides[slide]}"\n  branch = "{branch}"\n'
                f'  params = {{ model = "classical", tile_size = 256, workers = {workers} }}\n'
            )
    where.mkdir(parents=True, exist_ok=True)
    path = where / "c.toml"
    path.write_text("".join(out))
    return path


def program(where: Path) -> Path:
    """A `wsitui` script as pip installs it: a worker re-imports it (its name matters:
    `wsitui.cli` answers a Ctrl-C while starting only when run as `wsitui`)."""
    script = where / "wsitui"
    script.write_text(
        "import sys\nfrom wsitui.cli import main\n\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    return script


def start(cfg: Path, *, group: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(program(cfg.parent)), "run", str(cfg), "--quiet"],
        cwd=cfg.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=group,  # its own process group, as a terminal's foreground job
    )


def processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent, process group, command line) of every live (not zombie) process."""
    return {
        pid: (int(stat[1]), int(stat[2]), cmd.replace(b"\0", b" ").decode(errors="replace"))
        for pid, stat, cmd in live_processes()
    }


def workers_of(pid: int) -> set[int]:
    """The live processes forked by `pid`'s multiprocessing fork server."""
    procs = processes()
    servers = {p for p, (parent, _, cmd) in procs.items() if parent == pid and "forkserver" in cmd}
    return {p for p, (parent, _, _) in procs.items() if parent in servers}


def left_behind(group: int, seconds: float = 5.0) -> list[str]:
    """The live processes of process group `group` (a run started with `group=True`: its
    fork server, resource tracker and workers are in it) still there after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        left = [f"{p} {cmd[:90]}" for p, (_, g, cmd) in processes().items() if g == group]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def cells(data: Path) -> dict[str, list[str]]:
    found = {}
    for geo in sorted(data.glob("results/*/*/*/cells.geojson")):
        features = json.loads(geo.read_text())["features"]
        found[f"{geo.parts[-4]}/{geo.parts[-2]}"] = sorted(
            json.dumps(f["geometry"]) for f in features
        )
    return found


def manifests(data: Path) -> dict[str, dict]:
    return {
        f"{m.parts[-4]}/{m.parts[-2]}": json.loads(m.read_text())
        for m in data.glob("results/*/*/*/manifest.json")
    }


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory, cell_slides: dict[str, Path]) -> dict:
    """The cells of THREE_TENANTS run with `workers = 1` (each job on its own thread)."""
    where = tmp_path_factory.mktemp("serial")
    cfg = write_config(where, cell_slides, THREE_TENANTS, workers=1)
    proc = start(cfg)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    found = cells(where / "data")
    assert len(found) == 4 and all(len(c) > 100 for c in found.values())
    return found


# ---- a Ctrl-C that reaches a worker while it starts ----------------------------------------
def test_a_ctrl_c_reaching_workers_while_they_start_kills_none(
    tmp_path: Path, cell_slides: dict[str, Path], serial: dict
):
    """A terminal's Ctrl-C goes to the whole process group; a worker that is still starting
    (re-importing wsitui, ~0.1-1 s at every job's start, so at any moment in a cohort) died of
    it before `exit_with` had it ignore it: one `interrupted while starting; nothing was run`
    line per worker, and the job's pool broken (its tiles on its own thread). Here SIGINT is
    sent to each worker as soon as it exists, and to nothing else: the run goes on with every
    worker and says nothing."""
    cfg = write_config(tmp_path, cell_slides, THREE_TENANTS, workers=2)
    proc = start(cfg)
    hit: set[int] = set()
    try:
        while proc.poll() is None:
            for pid in workers_of(proc.pid) - hit:
                hit.add(pid)
                os.kill(pid, signal.SIGINT)
            time.sleep(0.002)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(hit) >= 8, hit  # each of the four jobs' two workers
    assert proc.returncode == 0, err
    assert "interrupted" not in err and "Traceback" not in err, err
    for key, manifest in manifests(tmp_path / "data").items():
        assert manifest["model"]["workers"] == 2, key
        assert "workers_failed" not in manifest["model"], (key, manifest["model"]["workers_failed"])
    assert cells(tmp_path / "data") == serial


# ---- several jobs on workers at once, tenants waiting ---------------------------------------
def test_jobs_of_three_tenants_on_workers_at_once_run_by_the_rules_to_the_serial_cells(
    tmp_path: Path, cell_slides: dict[str, Path], serial: dict
):
    """Three workers, two tenant slots: ann's two jobs and bob's run at once, each with its
    own pool of worker processes (six on the fork server), cat waits for a slot. The strict
    oracle passes, tenants go in in arrival order, every job ran on its workers and found the
    cells of the serial run, and nothing of the run's process group is left once it ended."""
    cfg = write_config(tmp_path, cell_slides, THREE_TENANTS, workers=2)
    proc = start(cfg, group=True)
    most = 0
    while proc.poll() is None:
        most = max(most, len(workers_of(proc.pid)))
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert most >= 4, most  # jobs' pools at once
    assert left_behind(proc.pid) == []
    events = list(read_events([tmp_path / "ev.jsonl"]))
    assert_by_the_rules(events, tmp_path / "data" / "state.db", workers=3, users=2)
    assert admitted(events) == ["ann", "bob", "cat"]
    assert {k: m["model"]["workers"] for k, m in manifests(tmp_path / "data").items()} == {
        k: 2 for k in serial
    }
    assert cells(tmp_path / "data") == serial


# ---- stopped or killed while jobs run on workers ---------------------------------------------
@pytest.mark.parametrize(
    ("how", "code"),
    [("SIGTERM", 130), ("Ctrl-C", 130), ("hang-up", 130), ("SIGKILL", -signal.SIGKILL)],
)
def test_a_run_stopped_or_killed_mid_jobs_leaves_no_worker_and_resumes_to_the_same_cells(
    tmp_path: Path, cell_slides: dict[str, Path], serial: dict, how: str, code: int
):
    """Mid-run (three jobs on workers, a tenant waiting): SIGTERM to wsitui, SIGINT or
    SIGHUP to its whole process group (a terminal's Ctrl-C, a closed terminal or SSH
    connection), or SIGKILL to wsitui alone (its workers end within ~1 s: `exit_with`). It
    ends without a traceback (after a hang-up the resource tracker, killed by it and started
    again by the stopping run, printed one per semaphore); within 5 s no process of its
    group is left (fork server, resource tracker, workers); the same command again resumes
    and finishes, by the rules, with the serial run's cells."""
    cfg = write_config(tmp_path, cell_slides, THREE_TENANTS, workers=2)
    proc = start(cfg, group=True)
    db, log = tmp_path / "data" / "state.db", tmp_path / "ev.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not any(  # a tile done on workers
            e["event"] == "job_progress" and e["tiles_done"] >= 2
            for e in (read_events([log]) if log.exists() else [])
        ):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        assert len(workers_of(proc.pid)) >= 2
        if how in ("Ctrl-C", "hang-up"):  # what a terminal sends the foreground group
            os.killpg(proc.pid, signal.SIGINT if how == "Ctrl-C" else signal.SIGHUP)
        else:
            os.kill(proc.pid, getattr(signal, how))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err and "interrupted while starting" not in err, err
    assert left_behind(proc.pid) == []
    done = {k for k, v in cells(tmp_path / "data").items() if v}
    assert done != set(serial), "stopped too late to resume anything"

    again = start(cfg, group=True)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert left_behind(again.pid) == []
    events = list(read_events([log]))
    oracle = check(events, max_workers=3, max_active_users=2, strict=how == "SIGKILL")
    assert oracle.violations == []
    assert missing_from_log(events, db) == []
    assert cells(tmp_path / "data") == serial


# ---- a cohort of small slides: a pool per job, one fork server ------------------------------
def test_a_cohort_on_workers_starts_one_fork_server_and_stays_flat(tmp_path: Path):
    """Six small slides, one worker: each slide's job gets its own pool of two workers and
    ends it; the fork server is started once for the run; the run's open files, threads and
    children are the same at the last slides as at the first; nothing is left after."""
    from tests.slides.samples import write_sample_slide

    (tmp_path / "co").mkdir()
    for i in range(6):
        write_sample_slide(tmp_path / "co" / f"s{i}.svs", size=(1536, 1536), seed=20 + i)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[scheduler]\nmax_workers = 1\n[paths]\ndata_dir = "data"\nevents = "ev.jsonl"\n'
        '[[workflows]]\ntenant = "lab"\nname = "co"\nslides = ["co/*.svs"]\n'
        '  [[workflows.jobs]]\n  id = "cells"\n  type = "SEGMENT_CELLS"\n'
        '  params = { model = "classical", tile_size = 256 }\n'  # workers: one per core
    )
    proc = start(cfg, group=True)
    samples: list[tuple[int, int, int]] = []  # (open fds, threads, live children)
    servers: set[int] = set()
    workers: set[int] = set()
    while proc.poll() is None:
        try:
            fds = sum(1 for _ in Path(f"/proc/{proc.pid}/fd").iterdir())
            threads = sum(1 for _ in Path(f"/proc/{proc.pid}/task").iterdir())
        except OSError:
            break
        procs = processes()
        kids = {p for p, (parent, _, _) in procs.items() if parent == proc.pid}
        servers |= {p for p in kids if "forkserver" in procs[p][2]}
        workers |= workers_of(proc.pid)
        samples.append((fds, threads, len(kids)))
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert left_behind(proc.pid) == []
    found = manifests(tmp_path / "data")
    assert len(found) == 6 and {m["model"]["workers"] for m in found.values()} == {2}
    assert len(servers) == 1, servers  # started once, by the first job's pool
    assert len(workers) >= 2 * 5, workers  # a pool per job (one may be missed between samples)
    half = len(samples) // 2
    for n, what in enumerate(("open files", "threads", "children")):
        first, last = max(s[n] for s in samples[:half]), max(s[n] for s in samples[half:])
        assert last <= first + (what != "children"), (what, first, last)  # a leak per job: +3


# ---- a slide cut short while its job runs on workers ---------------------------------------
def test_a_slide_truncated_mid_job_fails_that_job_in_one_line_and_no_other(
    tmp_path: Path, cell_slides: dict[str, Path], serial: dict
):
    """ann's slide is truncated while her job runs on workers beside bob's: her job fails
    with one line naming the slide and the fix, its workers end with it, bob's job finds the
    serial run's cells, and nothing of the run is left."""
    victim = tmp_path / "victim.svs"
    victim.write_bytes(cell_slides["s"].read_bytes())
    slides = {**cell_slides, "v": victim}
    work: Work = [("ann", [("a1", "main", "v")]), ("bob", [("b1", "main", "t")])]
    cfg = write_config(tmp_path, slides, work, workers=2, max_workers=2)
    proc = start(cfg, group=True)
    log = tmp_path / "ev.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not any(
            e["event"] == "job_progress" and e["tenant"] == "ann" and e["tiles_done"] >= 3
            for e in (read_events([log]) if log.exists() else [])
        ):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        with victim.open("r+b") as f:
            f.truncate(victim.stat().st_size // 3)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert left_behind(proc.pid) == []
    ends = {
        e["tenant"]: e
        for e in read_events([log])
        if e["event"] == "job_state" and e["state"] in ("FAILED", "SUCCEEDED")
    }
    assert ends["ann"]["state"] == "FAILED" and ends["bob"]["state"] == "SUCCEEDED"
    error = ends["ann"]["error"]
    assert "\n" not in error and str(victim) in error and "truncated" in error, error
    assert cells(tmp_path / "data")["bob/b1"] == serial["bob/b1"]
