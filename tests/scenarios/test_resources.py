"""A job may hold a GPU besides its worker (README "Scheduling rules", R9): a lane head that
does not fit is passed over, so CPU work never waits behind GPU work, and GPU jobs never
overlap past the cap. Fake gated executors (a CPU one and a one-GPU one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scenarios.harness import job, make_engine, wf
from wsitui.core.records import JobSpec

pytestmark = pytest.mark.anyio


def gpu(key: str, branch: str) -> JobSpec:
    return JobSpec(id=key, type="SEGMENT_CELLS", slide="s.svs", branch=branch)


async def test_cpu_jobs_pass_gpu_jobs_that_wait_for_the_one_gpu(tmp_path: Path):
    s = make_engine(tmp_path, workers=3, users=3)
    async with s.engine:
        s.engine.submit("a", wf("w", gpu("g1", "G1"), gpu("g2", "G2"), job("c1", "C")))
        await s.until(lambda: len(s.engine._runs) == 2)
        assert s.running_keys() == ["a/c1", "a/g1"]  # g2 waits for the GPU, c1 runs
        s.engine.submit("b", wf("w", job("b1", "B"), gpu("bg", "BG")))
        await s.until(lambda: len(s.engine._runs) == 3)
        assert s.running_keys() == ["a/c1", "a/g1", "b/b1"]
        await s.finish("a", "g1")  # the GPU frees: b never had it, a did -> b's GPU job
        await s.until(lambda: "b/bg" in s.running_keys())
        assert "a/g2" not in s.running_keys()
        await s.drain()
    assert s.watch.violations == []
    starts = s.watch.starts
    assert starts.index("b/bg") < starts.index("a/g2")


async def test_a_tenant_waiting_only_for_the_gpu_gives_its_slot_to_one_that_can_run(
    tmp_path: Path,
):
    s = make_engine(tmp_path, workers=4, users=2)
    async with s.engine:
        s.engine.submit("a", wf("w", gpu("ag", "G")))
        s.engine.submit("b", wf("w", gpu("bg", "G")))  # active, but the GPU is a's
        s.engine.submit("c", wf("w", job("c1", "C")))  # waiting: can run on a CPU
        await s.until(lambda: s.running_keys() == ["a/ag", "c/c1"])
        assert s.engine.stats().waiting == ("b",)  # b yielded, first in line
        await s.finish("c", "c1")
        await s.finish("a", "ag")
        await s.until(lambda: s.running_keys() == ["b/bg"])
        await s.drain()
    assert s.watch.violations == []


async def test_a_tenant_admitted_and_yielding_in_one_step_is_published_in_that_order(
    tmp_path: Path,
):
    # Found by a random scenario (GPU jobs, 2 tenant slots) checked by the oracle over the
    # event log. x's GPU job ends and x is released: a is admitted (the GPU is free), but b,
    # admitted earlier, takes the GPU in the same pass, so a is stalled and gives its slot to
    # c. The engine published "a released (yielded)" before "a admitted": read from outside,
    # a was released while waiting, then active beside b and c (3 active tenants of 2).
    from tests.core.oracle import check
    from wsitui.core.events import TenantAdmitted, TenantReleased

    s = make_engine(tmp_path, workers=4, users=2)
    changes: list[str] = []
    logged: list[dict[str, object]] = []
    s.engine.bus.add_listener(lambda e: logged.append(e.to_json()))
    s.engine.bus.add_listener(
        lambda e: changes.append(
            f"+{e.tenant}"
            if isinstance(e, TenantAdmitted)
            else f"-{e.tenant}{'~' if e.yielded else ''}"
            if isinstance(e, TenantReleased)
            else ""
        )
    )
    async with s.engine:
        s.engine.submit("x", wf("w", gpu("xg", "G")))
        s.engine.submit("b", wf("w", job("b0", "C"), gpu("bg", "G")))  # runs b0: not stalled
        s.engine.submit("a", wf("w", gpu("ag", "G")))
        s.engine.submit("c", wf("w", job("c1", "C")))
        await s.until(lambda: s.running_keys() == ["b/b0", "x/xg"])
        assert s.engine.stats().waiting == ("a", "c")
        changes.clear()
        await s.finish("x", "xg")
        await s.until(lambda: s.running_keys() == ["b/b0", "b/bg", "c/c1"])
        assert s.engine.stats().active == ("b", "c")
        assert s.engine.stats().waiting == ("a",)
        assert [c for c in changes if c] == ["-x", "+a", "-a~", "+c"]
        await s.drain()
    assert s.watch.violations == []
    oracle = check(logged, max_workers=4, max_active_users=2)
    assert oracle.violations == []
