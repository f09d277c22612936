"""A ready job that waits for the GPU another job holds says so, in every face (qa9: each said
"waiting for a free worker"): the reason is derived once in core (`phase`), from the needs
each job stores and the engine's resource state (R9), or for `wsitui status` from the stored
needs of the RUNNING jobs and the caps the engine stored."""

from __future__ import annotations

import io
import json
from pathlib import Path

import anyio
import pytest
from rich.console import Console

from tests.core.fakes import GatedExecutor, GatedGpu
from wsitui.core.engine import Engine
from wsitui.core.phase import JobPhase, job_phases, resource_wait, resources_in_use
from wsitui.core.records import JobSpec, WorkflowSpec
from wsitui.core.store import Store
from wsitui.headless.display import ProgressBars
from wsitui.headless.status import status
from wsitui.tui.badges import badges

pytestmark = pytest.mark.anyio


def spec(*jobs: tuple[str, str, str]) -> WorkflowSpec:
    return WorkflowSpec(
        name="w",
        jobs=tuple(JobSpec(id=k, type=t, slide="s.svs", branch=b) for k, t, b in jobs),
    )


def test_resource_wait_names_the_full_resource():
    assert resource_wait({"gpu": 1}, {"gpu": (1, 1)}) == "the GPU"
    assert resource_wait({"gpu": 1}, {"gpu": (1, 2)}) == ""
    assert resource_wait({"licence": 1}, {"licence": (2, 2)}) == "a free licence"
    assert resource_wait({}, {"gpu": (1, 1)}) == ""


async def test_a_job_ready_but_for_the_gpu_says_it_waits_for_the_gpu(tmp_path: Path, capsys):
    cpu, gpu = GatedExecutor(), GatedGpu()
    data = tmp_path / "d"
    bars = ProgressBars(Console(file=io.StringIO(), width=160, force_terminal=True))
    async with Engine(data, [cpu, gpu], max_workers=2) as engine:
        w = engine.submit(
            "t",
            spec(
                ("g0", "SEGMENT_CELLS", "a"),
                ("g1", "SEGMENT_CELLS", "b"),
                ("m", "TISSUE_MASK", "c"),
            ),
            start=False,
        )
        g0, g1, m = (j.id for j in w.jobs)
        engine.bus.add_listener(bars)
        bars.add([engine.workflow("t", w.workflow.id)], engine.stats().waiting, engine)
        engine.start("t", [g0, g1, m])
        with anyio.fail_after(10):
            await engine.wait_until(lambda: len(engine._runs) == 2)
        assert set(engine._runs) == {g0, m}  # the GPU is held by g0; m took the other worker
        assert engine.job("t", g1).needs == {"gpu": 1} and engine.job("t", m).needs == {}
        stats = engine.stats()
        jobs = engine.workflow("t", w.workflow.id).jobs
        phases = job_phases(jobs, stats.waiting, stats.resources)
        assert (phases[g1].phase, phases[g1].reason) == (JobPhase.READY, "waiting for the GPU")
        assert badges(jobs, stats.waiting, stats.resources)[g1].reason == "waiting for the GPU"
        row = next(t for t in bars.progress.tasks if t.id == bars._tasks[g1])
        assert "for the GPU" in row.fields["doing"]  # beside PENDING, at 80 columns
        # `wsitui status` (another process would read the same) says it from the data dir.
        assert status(data, as_json=True) == 0
        shown = {j["id"]: j for j in json.loads(capsys.readouterr().out)[0]["jobs"]}
        assert (shown[g1]["phase"], shown[g1]["reason"]) == ("ready", "waiting for the GPU")
        assert status(data) == 0
        assert "waiting for the GPU" in capsys.readouterr().out
        cpu.release(m)  # a worker frees: g1 still waits for the GPU, not for a worker
        with anyio.fail_after(10):
            await engine.wait_until(lambda: len(engine._runs) == 1)
        stats = engine.stats()
        jobs = engine.workflow("t", w.workflow.id).jobs
        assert job_phases(jobs, stats.waiting, stats.resources)[g1].reason == "waiting for the GPU"
        gpu.release(g0)
        with anyio.fail_after(10):
            await engine.wait_until(lambda: g1 in engine._runs)
        row = next(t for t in bars.progress.tasks if t.id == bars._tasks[g1])
        assert "for the GPU" not in row.fields["doing"]  # it runs: said no more
        gpu.release(g1)
        with anyio.fail_after(10):
            await engine.wait_until(engine.is_idle)
    store = Store(data / "state.db", readonly=True)
    try:
        assert store.capacity() == {"gpu": 1}
        assert {j.key: j.needs for j in store.jobs()} == {
            "g0": {"gpu": 1},
            "g1": {"gpu": 1},
            "m": {},
        }
        assert resources_in_use(store.jobs(), store.capacity()) == {"gpu": (0, 1)}
    finally:
        store.close()


async def test_a_job_ready_with_every_worker_busy_still_waits_for_a_worker(tmp_path: Path):
    cpu = GatedExecutor()
    async with Engine(tmp_path / "d", [cpu], max_workers=1) as engine:
        w = engine.submit("t", spec(("a", "TISSUE_MASK", "x"), ("b", "TISSUE_MASK", "y")))
        a, b = (j.id for j in w.jobs)
        with anyio.fail_after(10):
            await engine.wait_until(lambda: a in engine._runs)
        stats = engine.stats()
        jobs = engine.workflow("t", w.workflow.id).jobs
        assert job_phases(jobs, stats.waiting, stats.resources)[b].reason == (
            "waiting for a free worker"
        )
        cpu.release(a)
        with anyio.fail_after(10):
            await engine.wait_until(lambda: b in engine._runs)
        cpu.release(b)
        with anyio.fail_after(10):
            await engine.wait_until(engine.is_idle)


def test_a_resource_is_named_by_the_label_declared_beside_its_caps():
    """phase.py named only the GPU ("the GPU" for the literal name "gpu"); any other resource
    read "a free <name>" however its job type would say it. A job type now declares the label
    with its resources, and phase.py never names one."""
    from typing import ClassVar

    from wsitui.core.executor import Executor

    class FpgaJobs(Executor):
        job_type = "FPGA_TEST"
        resource_labels: ClassVar[dict[str, str]] = {"fpga": "an FPGA"}

        def capacity(self) -> dict[str, int]:
            return {"fpga": 1}

    assert resource_wait({"fpga": 1}, {"fpga": (1, 1)}) == "an FPGA"
    assert resource_wait({"gpu": 1}, {"gpu": (1, 1)}) == "the GPU"  # as before
    assert resource_wait({"tape": 1}, {"tape": (1, 1)}) == "a free tape"  # none declared
    with pytest.raises(ValueError, match="already labelled 'an FPGA'"):

        class OtherFpga(Executor):
            job_type = "FPGA_TEST_2"
            resource_labels: ClassVar[dict[str, str]] = {"fpga": "the accelerator"}

    assert '"gpu"' not in Path(resource_wait.__code__.co_filename).read_text()
