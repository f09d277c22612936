"""A harness for end-to-end scheduling scenarios on the real engine.

The executors are fakes (tests/core/fakes.py: a job runs until the test releases it): the
engine's scheduling is what is under test here, not image work. Every RUNNING transition the
engine publishes is checked against the README's rules as it happens (`RuleWatch`), so a
scenario only has to drive the engine and say which start order it expects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from tests.core.fakes import GatedExecutor, GatedGpu
from wsitui.core.engine import Engine
from wsitui.core.events import Event, JobStateChanged, TenantAdmitted, TenantReleased
from wsitui.core.records import JobSpec, JobState, WorkflowSpec


def job(key: str, branch: str = "main", deps: Iterable[str] = ()) -> JobSpec:
    return JobSpec(id=key, type="TISSUE_MASK", slide="s.svs", branch=branch, depends_on=tuple(deps))


def wf(name: str, *jobs: JobSpec) -> WorkflowSpec:
    return WorkflowSpec(name=name, jobs=jobs)


@dataclass
class RuleWatch:
    """Checks each published transition against the rules, from the events alone."""

    max_workers: int
    max_active_users: int
    running: dict[str, JobStateChanged] = field(default_factory=dict)
    states: dict[str, JobState] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)
    starts: list[str] = field(default_factory=list)  # job keys "tenant/wf-name/key"
    admitted: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # workflow id -> name

    def __call__(self, event: Event) -> None:
        if isinstance(event, TenantAdmitted):
            self.active.append(event.tenant)
            self.admitted.append(event.tenant)
            if len(self.active) > self.max_active_users:
                self.violations.append(f"R3: {self.active} active")
        elif isinstance(event, TenantReleased):
            if event.tenant in self.active:
                self.active.remove(event.tenant)
        elif isinstance(event, JobStateChanged):
            self._job(event)

    def _job(self, event: JobStateChanged) -> None:
        j = event.job
        self.states[j.id] = j.state
        if j.state is JobState.RUNNING and event.previous is not JobState.RUNNING:
            lane = (j.tenant, j.workflow_id, j.branch)
            for other in self.running.values():
                o = other.job
                if (o.tenant, o.workflow_id, o.branch) == lane:
                    self.violations.append(f"R1: {j.key} started while {o.key} runs")
            self.running[j.id] = event
            if len(self.running) > self.max_workers:
                self.violations.append(f"R2: {len(self.running)} running")
            if j.tenant not in self.active:
                self.violations.append(f"R3: {j.tenant} started {j.key} while not active")
            tenants = {e.job.tenant for e in self.running.values()}
            if len(tenants) > self.max_active_users:
                self.violations.append(f"R3: {sorted(tenants)} run at once")
            for dep in j.depends_on:
                if self.states.get(dep) is not JobState.SUCCEEDED:
                    self.violations.append(f"R4: {j.key} started before {dep} succeeded")
            self.starts.append(f"{j.tenant}/{j.key}")
        elif j.state is not JobState.RUNNING:
            self.running.pop(j.id, None)


class Scenario:
    """An open engine with gated executors (CPU and GPU) and a rule watch on its bus."""

    def __init__(self, engine: Engine, cpu: GatedExecutor, gpu: GatedGpu, watch: RuleWatch):
        self.engine, self.cpu, self.gpu, self.watch = engine, cpu, gpu, watch

    @property
    def running(self) -> list[str]:
        return sorted(self.engine._runs)

    def key(self, job_id: str) -> str:
        j = self.engine._jobs[job_id]
        return f"{j.tenant}/{j.key}"

    def running_keys(self) -> list[str]:
        return sorted(self.key(j) for j in self.engine._runs)

    def find(self, tenant: str, key: str, workflow_id: str | None = None) -> str:
        for j in self.engine._jobs.values():
            if j.tenant == tenant and j.key == key and workflow_id in (None, j.workflow_id):
                return j.id
        raise KeyError(f"{tenant}/{key}")

    async def until(self, predicate: Callable[[], bool], seconds: float = 10) -> None:
        with anyio.fail_after(seconds):
            await self.engine.wait_until(predicate)

    async def finish(self, tenant: str, key: str, outcome: str = "ok") -> None:
        """Release a running job with an outcome and wait until the engine has its end."""
        job_id = self.find(tenant, key)
        await self.until(lambda: job_id in self.engine._runs)
        for ex in (self.cpu, self.gpu):
            ex.release(job_id, outcome)
        await self.until(lambda: job_id not in self.engine._runs)

    async def drain(self) -> list[str]:
        """Release every job as it starts (oldest start first) until the engine is idle."""
        with anyio.fail_after(30):
            while not self.engine.is_idle():
                if not self.engine._runs:
                    await self.engine.wait_until(lambda: bool(self.engine._runs))
                    continue
                first = next(k for k in self.watch.running)
                for ex in (self.cpu, self.gpu):
                    ex.release(first)
                await self.engine.wait_until(lambda j=first: j not in self.engine._runs)
        return self.watch.starts


def make_engine(data_dir: Path, workers: int = 4, users: int = 3, **kw: object) -> Scenario:
    cpu, gpu = GatedExecutor(), GatedGpu()
    engine = Engine(
        data_dir,
        [cpu, gpu],
        max_workers=workers,
        max_active_users=users,
        cancel_grace=kw.pop("cancel_grace", 0.5),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    watch = RuleWatch(workers, users)
    engine.bus.add_listener(watch)
    return Scenario(engine, cpu, gpu, watch)
