"""A waiting tenant's workflow says why it does not run: its tenant waits for a slot, and its
place in line (qa9: its row read PENDING alone), from the engine's admission state (R3)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.core.fakes import GatedExecutor
from wsitui.core.engine import Engine
from wsitui.core.phase import ordinal, slot_wait
from wsitui.core.records import JobSpec, WorkflowSpec
from wsitui.headless.status import status


def one_job(key: str) -> WorkflowSpec:
    return WorkflowSpec(name="w", jobs=(JobSpec(id=key, type="TISSUE_MASK", slide="s.svs"),))


def test_ordinals():
    got = [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112)]
    assert got == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "23rd",
        "101st",
        "111th",
        "112th",
    ]
    assert slot_wait(2) == "2nd in line for a tenant slot"


@pytest.mark.anyio
async def test_a_waiting_tenants_workflow_says_its_place_in_line(tmp_path: Path, capsys):
    ex = GatedExecutor()
    async with Engine(tmp_path / "d", [ex], max_active_users=1) as engine:
        ids = {t: engine.submit(t, one_job(t)).workflow.id for t in ("a", "b", "c")}
        held = engine.submit("c", one_job("later"), start=False).workflow.id

        def reasons() -> list[str]:
            return [engine.workflow(t, i).reason for t, i in ids.items()]

        assert reasons() == ["", slot_wait(1), slot_wait(2)]
        assert [w.reason for w in engine.workflows("c")] == [slot_wait(2), ""]  # held: no slot
        assert engine.workflow("c", held).reason == ""
        ex.release(f"{ids['a']}.a")
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().active == ("b",))
        assert reasons() == ["", "", slot_wait(1)]
    # `wsitui status` reads the same from the stored admission state.
    assert status(tmp_path / "d", as_json=True) == 0
    shown = {(w["tenant"], w["id"]): w["reason"] for w in json.loads(capsys.readouterr().out)}
    assert shown == {("a", ids["a"]): "", ("b", ids["b"]): "", ("c", ids["c"]): slot_wait(1),
                     ("c", held): ""}  # fmt: skip


def test_a_workflow_and_its_jobs_read_one_place_in_line_for_each_of_three_tenants():
    """`workflow_wait` and `job_phases` each worked out a tenant's place in line their own way
    (`list.index` and a dict of their own); both now read `places_in_line`."""
    from wsitui.core.phase import JobPhase, job_phases, places_in_line, workflow_wait
    from wsitui.core.records import Job, JobState

    waiting = ("z", "x", "y")
    assert places_in_line(waiting) == {"z": 1, "x": 2, "y": 3}
    for tenant in waiting:
        job = Job(
            id=f"w{tenant}.j",
            key="j",
            workflow_id=f"w{tenant}",
            tenant=tenant,
            job_type="TISSUE_MASK",
            slide="s.svs",
            branch="main",
            depends_on=(),
            params={},
            state=JobState.PENDING,
        )
        info = job_phases([job], waiting)[job.id]
        place = places_in_line(waiting)[tenant]
        assert info.phase is JobPhase.WAITING
        assert info.reason == workflow_wait(tenant, waiting, queued=True) == slot_wait(place)
    assert workflow_wait("other", waiting, queued=True) == ""
    assert workflow_wait("x", waiting, queued=False) == ""
