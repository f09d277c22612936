"""Tenant queues from outside, round 3: `wsitui run` on TOML configs (real TISSUE_MASK jobs on a
small generated slide), checked from its JSONL event log with the strict oracle (R1-R4, R6's
start order, no idle worker or tenant slot) and from state.db alone. Families not covered
before: five tenants whose workflows are interleaved in a config; one worker shared
round-robin by many tenants; more workers than branches; a tenant that finished and gets new
work from a later config, or a retry, waiting behind those already in line; a restart
(SIGKILL, SIGTERM) while tenants wait for a slot; a dependency on a job of another branch
listed later that fails (README: Scheduling rules, Commands, Machine-readable output)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.core.oracle import check, missing_from_log, read_events
from tests.headless.helpers import REPO, corrupt_tiles, wsitui

# A workflow: (tenant, name, [(job id, branch, depends_on, slide key)]); slide keys: "good",
# "broken" (opens, every tile read fails).
Job = tuple[str, str, Sequence[str], str]
Workflow = tuple[str, str, Sequence[Job]]


def write_config(
    tmp_path: Path,
    slides: dict[str, Path],
    workflows: Sequence[Workflow],
    *,
    workers: int,
    users: int,
    name: str = "c.toml",
) -> Path:
    out = [
        f"[scheduler]\nmax_workers = {workers}\nmax_active_users = {users}\n"
        f'[paths]\ndata_dir = "data"\nevents = "ev.jsonl"\n'
    ]
    for tenant, wf_name, jobs in workflows:
        out.append(f'[[workflows]]\ntenant = "{tenant}"\nname = "{wf_name}"\n')
        for key, branch, deps, slide in jobs:
            out.append(
                f'  [[workflows.jobs]]\n  id = "{key}"\n  type = "TISSUE_MASK"\n'
                f'  slide = "{slides[slide]}"\n  branch = "{branch}"\n'
                f"  depends_on = {json.dumps(list(deps))}\n"
                "  params = { tile_size = 512 }\n"
            )
    path = tmp_path / name
    path.write_text("".join(out))
    return path


def one(key: str, branch: str = "main", deps: Sequence[str] = (), slide: str = "good") -> Job:
    return (key, branch, deps, slide)


def starts(events: list[dict]) -> list[str]:
    """tenant/job of every start, in log order."""
    return [
        f"{e['tenant']}/{e['job_id'].split('.')[-1]}"
        for e in events
        if e["event"] == "job_state" and e["state"] == "RUNNING" and e["previous"] != "RUNNING"
    ]


def admitted(events: list[dict]) -> list[str]:
    return [e["tenant"] for e in events if e["event"] == "tenant_admitted"]


def assert_by_the_rules(events: list[dict], db: Path, *, workers: int, users: int) -> None:
    oracle = check(events, max_workers=workers, max_active_users=users, strict=True)
    assert oracle.violations == []
    assert missing_from_log(events, db) == []


def tenant_rows(db: Path) -> list[tuple[str, str]]:
    """(tenant, status) of state.db's tenant table: the active ones in admission order, then
    the waiting ones in arrival order."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT tenant, status, ord FROM tenants").fetchall()
    finally:
        con.close()
    return [(t, s) for t, s, _ in sorted(rows, key=lambda r: (r[1] != "active", r[2]))]


@pytest.fixture
def paths(tmp_path: Path, slides: tuple[Path, Path]) -> dict[str, Path]:
    broken = tmp_path / "broken.svs"
    corrupt_tiles(slides[1], broken)
    return {"good": slides[1], "broken": broken}


# Five tenants whose workflows interleave in the config: each arrives with its first one.
INTERLEAVED: list[Workflow] = [
    ("cat", "w1", [one("c1")]),
    ("ann", "w1", [one("a1", "A"), one("a2", "B")]),
    ("eve", "w1", [one("e1")]),
    ("ann", "w2", [one("a3")]),
    ("bob", "w1", [one("b1", "A"), one("b2", "A")]),
    ("cat", "w2", [one("c2", "X", ["c3"]), one("c3", "Y")]),  # c2 needs c3, listed later
    ("dan", "w1", [one("d1")]),
    ("eve", "w2", [one("e2")]),
]


@pytest.mark.parametrize("users", [1, 2])
def test_five_tenants_with_interleaved_workflows_are_admitted_by_their_first_workflow(
    tmp_path: Path, paths: dict[str, Path], users: int
):
    cfg = write_config(tmp_path, paths, INTERLEAVED, workers=2, users=users)
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    events = list(read_events([tmp_path / "ev.jsonl"]))
    assert_by_the_rules(events, tmp_path / "data" / "state.db", workers=2, users=users)
    # Each tenant is admitted once (all its work arrives at once) in config order of its first
    # workflow, never by name and never again for a later workflow of its own.
    assert admitted(events) == ["cat", "ann", "eve", "bob", "dan"]
    order = starts(events)
    assert len(order) == 11
    assert order.index("cat/c3") < order.index("cat/c2")
    assert order.index("bob/b1") < order.index("bob/b2")
    if users == 1:  # one tenant at a time: its jobs run in one block, tenants in arrival order
        assert [s.split("/")[0] for s in order] == (
            ["cat"] * 3 + ["ann"] * 3 + ["eve"] * 2 + ["bob"] * 2 + ["dan"]
        )


def test_one_worker_is_shared_round_robin_by_four_active_tenants(
    tmp_path: Path, paths: dict[str, Path]
):
    # Unequal amounts of work: no tenant gets a second start before every other active one
    # with a ready job got one (R6), and a tenant with much work never starves the others.
    workflows: list[Workflow] = [
        ("zed", "w", [one("z1", "A"), one("z2", "B"), one("z3", "C"), one("z4", "A")]),
        ("amy", "w", [one("a1")]),
        ("kim", "w", [one("k1", "A"), one("k2", "A")]),
        ("bob", "w", [one("b1", "A"), one("b2", "B", ["b1"])]),
    ]
    cfg = write_config(tmp_path, paths, workflows, workers=1, users=4)
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    events = list(read_events([tmp_path / "ev.jsonl"]))
    assert_by_the_rules(events, tmp_path / "data" / "state.db", workers=1, users=4)
    assert starts(events) == [
        "zed/z1", "amy/a1", "kim/k1", "bob/b1",  # every tenant once, in admission order
        "zed/z2", "kim/k2", "bob/b2",  # amy is done
        "zed/z3",
        "zed/z4",
    ]  # fmt: skip


def test_more_workers_than_branches_start_every_ready_branch_at_once(
    tmp_path: Path, paths: dict[str, Path]
):
    # A fan-out across branches and a join: 8 workers, never more than 3 branches ready.
    workflows: list[Workflow] = [
        (
            "t",
            "fan",
            [
                one("root", "R"),
                one("p", "P", ["root"]),
                one("q", "Q", ["root"]),
                one("join", "R", ["p", "q"]),
                one("tail", "P"),
            ],
        ),
        ("u", "w", [one("u1", "U"), one("u2", "V")]),
    ]
    cfg = write_config(tmp_path, paths, workflows, workers=8, users=2)
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    events = list(read_events([tmp_path / "ev.jsonl"]))
    assert_by_the_rules(events, tmp_path / "data" / "state.db", workers=8, users=2)
    order = starts(events)
    assert set(order[:3]) == {"t/root", "u/u1", "u/u2"}  # every ready lane head at once
    assert order.index("t/p") < order.index("t/tail")  # P: p was listed before tail
    assert order[-1] == "t/join" or order.index("t/join") > max(
        order.index("t/p"), order.index("t/q")
    )


def test_a_dependency_on_a_later_listed_job_of_another_branch_that_fails(
    tmp_path: Path, paths: dict[str, Path]
):
    # x (branch A) needs bad (branch B, listed later), which fails: x is blocked and leaves
    # lane A, so y behind it runs; z (after x) is blocked through it. Then ann has nothing that
    # can run and her slot goes to bob, who waited (one tenant slot).
    workflows: list[Workflow] = [
        (
            "ann",
            "w",
            [
                one("x", "A", ["bad"]),
                one("y", "A"),
                one("bad", "B", slide="broken"),
                one("z", "C", ["x"]),
            ],
        ),
        ("bob", "w", [one("b1")]),
    ]
    cfg = write_config(tmp_path, paths, workflows, workers=3, users=1)
    out = wsitui("run", cfg, "--json", cwd=tmp_path, timeout=120)
    assert out.returncode == 1, out.stderr
    events = list(read_events([tmp_path / "ev.jsonl"]))
    assert_by_the_rules(events, tmp_path / "data" / "state.db", workers=3, users=1)
    assert starts(events) == ["ann/bad", "ann/y", "bob/b1"]
    jobs = {
        (w["tenant"], j["key"]): (j["state"], j["phase"])
        for w in json.loads(out.stdout)["workflows"]
        for j in w["jobs"]
    }
    assert jobs[("ann", "x")] == ("PENDING", "blocked")
    assert jobs[("ann", "z")] == ("PENDING", "blocked")
    assert jobs[("ann", "bad")][0] == "FAILED"
    assert admitted(events) == ["ann", "bob"]


def test_a_retry_after_its_tenant_was_released_waits_behind_earlier_arrivals(
    tmp_path: Path, paths: dict[str, Path], slides: tuple[Path, Path]
):
    # Run 1: ann's job fails (its dependant is blocked): ann is released, bob runs.
    first: list[Workflow] = [
        ("ann", "w", [one("bad", "A", slide="broken"), one("after", "B", ["bad"])]),
        ("bob", "w", [one("b1")]),
    ]
    cfg = write_config(tmp_path, paths, first, workers=2, users=1)
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 1, out.stderr
    logged_first = len(list(read_events([tmp_path / "ev.jsonl"])))
    # The slide is repaired in place; run 2 lists a new tenant first: cat arrives first, ann's
    # retry (and the dependant it unblocks) second, bob's new workflow third.
    paths["broken"].write_bytes(slides[1].read_bytes())
    second: list[Workflow] = [("cat", "w", [one("c1")]), *first, ("bob", "w2", [one("b2")])]
    cfg = write_config(tmp_path, paths, second, workers=2, users=1)
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    events = list(read_events([tmp_path / "ev.jsonl"]))
    assert_by_the_rules(events, tmp_path / "data" / "state.db", workers=2, users=1)
    rerun = events[logged_first:]
    assert admitted(rerun) == ["cat", "ann", "bob"]
    assert starts(rerun) == ["cat/c1", "ann/bad", "ann/after", "bob/b2"]


def test_a_tenant_arrives_with_its_first_workflow_that_brings_work_not_a_finished_one(
    tmp_path: Path, paths: dict[str, Path]
):
    # Run 1 finishes ann/w1 and bob/w1. Run 2's config lists ann/w1 first again (finished:
    # it resumes with nothing to do), then bob's new w2, then ann's new w2: bob gained live
    # work first, so bob is admitted first (R3: arrival is the order tenants gain live work).
    first: list[Workflow] = [("ann", "w1", [one("a1")]), ("bob", "w1", [one("b1")])]
    cfg = write_config(tmp_path, paths, first, workers=2, users=1)
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    logged = len(list(read_events([tmp_path / "ev.jsonl"])))
    second = [first[0], ("bob", "w2", [one("b2")]), ("ann", "w2", [one("a2")]), first[1]]
    cfg = write_config(tmp_path, paths, second, workers=2, users=1)
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    events = list(read_events([tmp_path / "ev.jsonl"]))
    assert_by_the_rules(events, tmp_path / "data" / "state.db", workers=2, users=1)
    assert admitted(events[logged:]) == ["bob", "ann"]
    assert starts(events[logged:]) == ["bob/b2", "ann/a2"]  # nothing finished ran again


def _popen(cfg: Path, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "wsitui.cli", "run", str(cfg), "--quiet"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_log(log: Path, proc: subprocess.Popen[bytes], done: int) -> None:
    """Until the log shows `done` successes and ends on a whole line."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        text = log.read_text() if log.exists() else ""
        if text.count('"state":"SUCCEEDED"') >= done and text.endswith("\n"):
            return
        time.sleep(0.005)
    raise AssertionError(f"the run ended or stalled before {done} jobs succeeded")


# Five tenants, two slots, two workers: after two jobs ended, two tenants run and three wait.
WAITERS: list[Workflow] = [
    (t, "w", [one(f"{t}1", "A"), one(f"{t}2", "A"), one(f"{t}3", "B")])
    for t in ("eve", "bob", "dan", "amy", "cal")
]


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_restart_while_tenants_wait_keeps_the_active_set_and_the_waiting_order(
    tmp_path: Path, paths: dict[str, Path], how: signal.Signals
):
    cfg = write_config(tmp_path, paths, WAITERS, workers=2, users=2)
    log, db = tmp_path / "ev.jsonl", tmp_path / "data" / "state.db"
    proc = _popen(cfg, tmp_path)
    _wait_for_log(log, proc, 4)
    os.kill(proc.pid, how)
    proc.wait(timeout=30)
    at_stop = tenant_rows(db)
    active = [t for t, s in at_stop if s == "active"]
    waiting = [t for t, s in at_stop if s == "waiting"]
    # The stop lands while some wait. A tenant's release and the next one's admission are one
    # commit: a kill never leaves a slot free in state.db while a tenant waits (it once could,
    # between the release and the dispatch after it: CI saw bob active, dan, amy, cal waiting).
    assert len(active) == 2 and len(waiting) >= 2, at_stop
    logged_at_stop = len(list(read_events([log])))

    # Another config with new work only: a new tenant, then a new workflow of the tenant
    # admitted first. The stored work runs too; what waited goes first, in its stored order,
    # the new arrivals behind it in this config's order.
    more: list[Workflow] = [("fay", "w", [one("f1")]), ("eve", "w2", [one("e9")])]
    cfg = write_config(tmp_path, paths, more, workers=2, users=2, name="more.toml")
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    events = list(read_events([log]))
    rerun = events[logged_at_stop:]
    # strict for a kill only: a job that ends on its own while a stop winds down leaves its
    # worker idle on purpose (a stop starts nothing)
    oracle = check(events, max_workers=2, max_active_users=2, strict=how == signal.SIGKILL)
    assert oracle.violations == []
    assert missing_from_log(events, db) == []
    # The stopped process's active tenants keep their slots (the oracle: none is admitted
    # twice), and the waiting ones are admitted exactly in their stored order, before any new
    # arrival; eve, done before the stop, arrives again with her new workflow, after fay.
    late = ["fay"] if "eve" in active + waiting else ["fay", "eve"]
    # (a kill between a commit and its log lines: the rerun first appends the admission that
    # commit made, "recovered", before anything of its own)
    assert admitted([e for e in rerun if not e.get("recovered")]) == waiting + late
    con = sqlite3.connect(db)
    states = dict(con.execute("SELECT id, state FROM jobs").fetchall())
    con.close()
    assert len(states) == 17 and set(states.values()) == {"SUCCEEDED"}


def test_held_work_left_by_the_tui_holds_no_tenant_slot(tmp_path: Path, paths: dict[str, Path]):
    # The TUI submits held (not started) workflows; `wsitui run` on that data dir runs its
    # config around them: a held job never makes its tenant active nor keeps it active.
    from wsitui.core.engine import Engine
    from wsitui.core.records import JobSpec, WorkflowSpec
    from wsitui.jobs.registry import default_executors

    async def leave_held() -> None:
        async with Engine(tmp_path / "data", default_executors()) as engine:
            for tenant in ("hal", "ann"):
                spec = WorkflowSpec(
                    name="draft",
                    jobs=(
                        JobSpec(id="h1", type="TISSUE_MASK", slide=str(paths["good"])),
                        JobSpec(id="h2", type="TISSUE_MASK", slide=str(paths["good"]), branch="B"),
                    ),
                )
                engine.submit(tenant, spec, start=False)

    import anyio

    anyio.run(leave_held)
    workflows: list[Workflow] = [
        ("ann", "w", [one("a1"), one("a2", "B")]),
        ("bob", "w", [one("b1")]),
        ("cat", "w", [one("c1")]),
    ]
    cfg = write_config(tmp_path, paths, workflows, workers=2, users=1)
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    events = list(read_events([tmp_path / "ev.jsonl"]))
    db = tmp_path / "data" / "state.db"
    assert check(events, max_workers=2, max_active_users=1, strict=True).violations == []
    # Held jobs submitted before this log existed are not in it (README: Machine-readable
    # output); every other committed transition is.
    missing = missing_from_log(events, db)
    assert [m for m in missing if not m.split(":")[0].endswith((".h1", ".h2"))] == []
    assert admitted(events) == ["ann", "bob", "cat"]  # never hal: held work is no work
    released = [e["tenant"] for e in events if e["event"] == "tenant_released"]
    assert released == ["ann", "bob", "cat"]  # ann with her held draft left as it was
    assert starts(events) == ["ann/a1", "ann/a2", "bob/b1", "cat/c1"]
    con = sqlite3.connect(db)
    held = con.execute("SELECT tenant, key, state, enqueued FROM jobs WHERE key LIKE 'h%'")
    assert sorted(held.fetchall()) == [
        (t, k, "PENDING", 0) for t in ("ann", "hal") for k in ("h1", "h2")
    ]
    assert tenant_rows(db) == []  # nobody is active or waiting once the run is done
    con.close()


def rerun_under_new_cap(
    events: list[dict], logged: int, db: Path, users: tuple[int, int], *, strict: bool
) -> tuple[list[dict], list[str]]:
    """A log whose first `logged` lines ran under max_active_users users[0] and the rest (a
    restart) under users[1]: one oracle over both (the same oracle goes on under the new cap),
    no committed transition missing from it. The restart's lines, and the tenants it released
    because the cap was lowered."""
    oracle = check(events[:logged], max_workers=3, max_active_users=users[0], strict=strict)
    assert oracle.violations == []
    oracle.max_active_users = users[1]
    for n, e in enumerate(events[logged:], logged):
        oracle.feed(n, e)
    assert oracle.violations == []
    assert missing_from_log(events, db) == []
    rerun = events[logged:]
    lowered = [
        e["tenant"] for e in rerun if e["event"] == "tenant_released" and e.get("cap_lowered")
    ]
    return rerun, lowered


def _kill_after(cfg: Path, tmp_path: Path, done: int) -> int:
    """Run `cfg`, SIGKILL it once `done` jobs succeeded; the number of lines logged then."""
    log = tmp_path / "ev.jsonl"
    proc = _popen(cfg, tmp_path)
    _wait_for_log(log, proc, done)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return len(list(read_events([log])))


FOUR = ["eve", "bob", "dan", "amy"]


@pytest.mark.parametrize("users", [(1, 3), (3, 1)], ids=["more-slots", "fewer-slots"])
def test_a_restart_with_another_tenant_cap_keeps_the_waiting_order(
    tmp_path: Path, paths: dict[str, Path], users: tuple[int, int]
):
    tenants = ["eve", "bob", "dan", "amy", "cal"]
    workflows: list[Workflow] = [(t, "w", [one(f"{t}1"), one(f"{t}2")]) for t in tenants]
    cfg = write_config(tmp_path, paths, workflows, workers=3, users=users[0])
    logged = _kill_after(cfg, tmp_path, 1)  # nobody is done: each has two jobs in one lane
    db = tmp_path / "data" / "state.db"
    before = tenant_rows(db)
    active = [t for t, s in before if s == "active"]
    assert len(active) == users[0] and len(before) == 5, before

    cfg = write_config(tmp_path, paths, workflows, workers=3, users=users[1])
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    events = list(read_events([tmp_path / "ev.jsonl"]))
    rerun, lowered = rerun_under_new_cap(events, logged, db, users, strict=True)
    # More slots: the first waiting go in at once, in their order. Fewer: those admitted
    # first keep theirs; the others are released and wait first in line, in admission order.
    assert lowered == active[users[1] :]
    assert admitted(rerun) == [t for t, _ in before][min(users) :]


def test_fewer_workers_after_a_kill_start_every_interrupted_job_before_any_other(
    tmp_path: Path, paths: dict[str, Path]
):
    workflows: list[Workflow] = [
        (t, "w", [one(f"{t}1", "A"), one(f"{t}2", "B"), one(f"{t}3", "A")]) for t in FOUR[:2]
    ]
    cfg = write_config(tmp_path, paths, workflows, workers=3, users=2)
    log, db = tmp_path / "ev.jsonl", tmp_path / "data" / "state.db"
    proc = _popen(cfg, tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until one ended and three run
        events = list(read_events([log])) if log.exists() else []
        running = {e["job_id"]: e["state"] for e in events if e["event"] == "job_state"}
        if (
            list(running.values()).count("SUCCEEDED") >= 1
            and list(running.values()).count("RUNNING") == 3
            and log.read_text().endswith("\n")
        ):
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    logged = len(list(read_events([log])))
    con = sqlite3.connect(db)
    ran = {r[0] for r in con.execute("SELECT id FROM jobs WHERE state = 'RUNNING'")}
    done = con.execute("SELECT COUNT(*) FROM jobs WHERE state = 'SUCCEEDED'").fetchone()[0]
    con.close()
    assert len(ran) == 3, ran

    cfg = write_config(tmp_path, paths, workflows, workers=1, users=2)
    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    events = list(read_events([log]))
    oracle = check(events[:logged], max_workers=3, max_active_users=2, strict=True)
    oracle.max_workers = 1  # one worker from the restart on
    for n, e in enumerate(events[logged:], logged):
        oracle.feed(n, e)
    assert oracle.violations == []
    assert missing_from_log(events, db) == []
    again = [
        e["job_id"]
        for e in events[logged:]
        if e["event"] == "job_state" and e["state"] == "RUNNING" and e["previous"] != "RUNNING"
    ]
    assert set(again[:3]) == ran  # one at a time, but all three before any other job
    assert len(again) == len(set(again)) == 6 - done


def _kill_when_running(cfg: Path, cwd: Path, job: str, times: int, *, submitted: str) -> None:
    """Run `cfg` and SIGKILL it once the log shows `job` started for the `times`th time and
    job `submitted` submitted (a config's later workflow is submitted after the start of an
    earlier one's job, the resumed one's at a restart: under load a kill at that start came
    before it, so the next run submitted it after a retry of the first, in another order)."""
    log = cwd / "ev.jsonl"
    proc = _popen(cfg, cwd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        text = log.read_text() if log.exists() else ""
        if text.endswith("\n"):
            started = [
                e
                for e in map(json.loads, text.splitlines())
                if e["event"] == "job_state"
                and e["state"] == "RUNNING"
                and e["previous"] != "RUNNING"
                and e["job_id"].endswith(f".{job}")
            ]
            if len(started) == times and f'.{submitted}","workflow_id"' in text:
                break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_poison_job_failed_at_a_restart_frees_its_tenant_slot_for_the_waiting_tenant(
    tmp_path: Path, paths: dict[str, Path], slides: tuple[Path, Path]
):
    # ann's a1 is killed twice while it runs alone: the third run fails it when it opens
    # instead of resuming it (a2 after it is blocked), so ann has nothing that can run and is
    # released: bob, who waited, goes in. The same command then retries a1 (a config's failed
    # jobs are retried): ann arrives again, behind bob, and runs once bob is done.
    paths = {**paths, "big": slides[0]}
    workflows: list[Workflow] = [
        ("ann", "w", [one("a1", "A", slide="big"), one("a2", "B", ["a1"])]),
        ("bob", "w", [one("b1")]),
    ]
    cfg = write_config(tmp_path, paths, workflows, workers=1, users=1)
    db, log = tmp_path / "data" / "state.db", tmp_path / "ev.jsonl"
    _kill_when_running(cfg, tmp_path, "a1", 1, submitted="b1")
    _kill_when_running(cfg, tmp_path, "a1", 2, submitted="b1")
    con = sqlite3.connect(db)
    crashes = con.execute("SELECT state, crashes FROM jobs WHERE key = 'a1'").fetchone()
    con.close()
    assert crashes == ("RUNNING", 1), crashes  # both kills landed while a1 ran alone
    logged = len(list(read_events([log])))

    out = wsitui("run", cfg, "--quiet", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    events = list(read_events([log]))
    assert_by_the_rules(events, db, workers=1, users=1)
    third = events[logged:]
    assert next(e["reason"] for e in third if e["event"] == "job_state").startswith(
        "failed: crashed the process on two consecutive starts"
    )
    tenants = [
        (e["event"], e["tenant"])
        for e in third
        if e["event"] in ("tenant_admitted", "tenant_released")
    ]
    assert tenants == [
        ("tenant_released", "ann"),
        ("tenant_admitted", "bob"),
        ("tenant_released", "bob"),
        ("tenant_admitted", "ann"),
        ("tenant_released", "ann"),
    ]
    assert starts(third) == ["bob/b1", "ann/a1", "ann/a2"]
    assert tenant_rows(db) == []
