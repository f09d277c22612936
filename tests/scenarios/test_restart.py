"""A stop (clean, or a crash copy of state.db) and a restart continue exactly where the engine
was: the same start order as a run never stopped, waiting tenants in arrival order, the job
that ran resumed first (README "Scheduling rules": Durability). Fake gated executors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.crash import snapshot
from tests.scenarios.harness import job, make_engine, wf

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
