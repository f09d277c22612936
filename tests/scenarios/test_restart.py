"""A stop (clean, or a crash copy of state.db) and a restart continue exactly where the engine
was: the same start order as a run never stopped, waiting tenants in arrival order, the job
that ran resumed first (README "Scheduling rules": Durability). Fake gated executors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.crash import snapshot
from tests.core.oracle import check, read_events
from tests.scenarios.harness import job, make_engine, wf
from wsitui.core.eventlog import JsonlEventLog

pytestmark = pytest.mark.anyio

TENANTS = ("c", "a", "d", "b")


def submit_all(s) -> None:
    for t in TENANTS:
        s.engine.submit(
            t,
            wf(
                "w",
                job(f"{t}1", "A"),
                job(f"{t}2", "A"),
                job(f"{t}3", "B", deps=[f"{t}1"]),
            ),
        )
    s.engine.submit("a", wf("w2", job("a4", "A")))  # more work while a is active


async def reference(tmp_path: Path) -> list[str]:
    s = make_engine(tmp_path / "ref", workers=2, users=2)
    async with s.engine:
        submit_all(s)
        return list(await s.drain())


@pytest.mark.parametrize("how", ["clean", "crash"])
@pytest.mark.parametrize("stop_after", [1, 3, 6])
async def test_a_restart_keeps_the_start_order_of_a_run_never_stopped(
    tmp_path: Path, how: str, stop_after: int
):
    expected = await reference(tmp_path)
    s = make_engine(tmp_path / "run", workers=2, users=2)
    async with s.engine:
        submit_all(s)
        while len(s.watch.starts) < stop_after + 2:  # release the oldest running job
            first = next(iter(s.watch.running))
            s.cpu.release(first)
            await s.until(lambda j=first: j not in s.engine._runs)
        running = [j for j in s.watch.running if j in s.engine._runs]  # in start order
        data = snapshot(s.engine, tmp_path / "copy") if how == "crash" else s.engine.data_dir
    before = list(s.watch.starts)
    again = make_engine(data, workers=2, users=2)
    again.watch.active = list(s.watch.active)  # what the appended event log knows
    again.watch.states = dict(s.watch.states)
    async with again.engine:
        resumed = list(again.watch.starts)  # started while it opened: what ran at the stop
        for job_id in running:  # released in the order the stopped run would have
            await again.until(lambda j=job_id: j in again.engine._runs)
            again.cpu.release(job_id)
            await again.until(lambda j=job_id: j not in again.engine._runs)
        order = await again.drain()
    assert sorted(resumed) == sorted(again.key(j) for j in running)
    assert before + order[len(running) :] == expected
    assert again.watch.violations == [] and s.watch.violations == []


async def test_a_restart_with_fewer_tenant_slots_keeps_those_admitted_first(tmp_path: Path):
    """max_active_users 3, then 1 after a stop: the tenant admitted first keeps its slot; the
    others are released (`cap_lowered`) and wait first in line in admission order, ahead of the
    tenant that was waiting; the log of all runs adds up (oracle) and the line survives a
    second restart."""
    log_path = tmp_path / "ev.jsonl"
    log = JsonlEventLog(log_path)
    s = make_engine(tmp_path / "d", workers=4, users=3)
    s.engine.bus.add_listener(log)
    async with s.engine:
        submit_all(s)
        await s.until(lambda: len(s.engine._runs) == 4)  # c, a, d active; b waits
    for _ in range(2):
        again = make_engine(tmp_path / "d", workers=4, users=1)
        again.engine.bus.add_listener(log)
        async with again.engine:
            assert again.engine.stats().active == ("c",)
            assert again.engine.stats().waiting == ("a", "d", "b")
    last = make_engine(tmp_path / "d", workers=4, users=1)
    last.engine.bus.add_listener(log)
    async with last.engine:
        await last.drain()
    log.close()
    events = list(read_events([log_path]))
    assert check(events, max_workers=4, max_active_users=3).violations == []
    released = [e for e in events if e["event"] == "tenant_released" and e.get("cap_lowered")]
    assert [e["tenant"] for e in released] == ["a", "d"]  # once: the first reopen
    admitted = [e["tenant"] for e in events if e["event"] == "tenant_admitted"]
    assert admitted == ["c", "a", "d", "a", "d", "b"]
