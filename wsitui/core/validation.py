"""Validation of what is submitted: tenant ids, job types, params, resources, upstreams and the
dependency graph. Every refusal is an `InvalidRequest` with one line naming the job and the fix,
raised before anything changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ValidationError

from wsitui.core import rules
from wsitui.core.errors import InvalidRequest
from wsitui.core.executor import Executor, UpstreamSpec
from wsitui.core.pydantic_errors import first_problem
from wsitui.core.records import SAFE_ID, SAFE_ID_HINT, Job, JobSpec


def check_tenant(tenant: str) -> None:
    if not isinstance(tenant, str) or not SAFE_ID.match(tenant):
        raise InvalidRequest(f"tenant {tenant!r} is not allowed: {SAFE_ID_HINT}")


def params_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """First pydantic error as one line: `params.tile_size: Input should be ...`; a param the
    job type does not have (a misspelling) names the ones it has."""
    problem = first_problem(exc)
    where = problem.dotted or "params"
    if problem.type == "extra_forbidden" and model is not None and len(problem.loc) == 1:
        known = ", ".join(model.model_fields)
        return (
            f"params.{where}: not a param of this job type; remove it or check its spelling "
            f"(its params: {known})"
        ).replace("params.params", "params")
    return f"params.{where}: {problem.msg}".replace("params.params", "params")


class JobValidator:
    """Checks jobs against the installed executors and the scheduler's resource caps."""

    def __init__(self, executors: Mapping[str, Executor], scheduler: rules.Scheduler) -> None:
        self.executors = executors
        self.scheduler = scheduler

    def params(self, spec: JobSpec) -> BaseModel:
        executor = self.executors.get(str(spec.type))
        if executor is None:
            raise InvalidRequest(
                f"job {spec.id!r}: unknown job type {spec.type!r} (no executor is installed "
                f"for it); use one of: {', '.join(sorted(self.executors)) or 'none'}"
            )
        try:
            return executor.params_model.model_validate(spec.params)
        except ValidationError as exc:
            model = executor.params_model
            raise InvalidRequest(f"job {spec.id!r}: {params_error(exc, model)}") from None

    def ordered(self, specs: Sequence[JobSpec], existing: Mapping[str, Job]) -> list[JobSpec]:
        """Check ids, types, params, resources, upstreams and the DAG; return specs in a stable
        topological order."""
        keys: dict[str, JobSpec] = {}
        for spec in specs:
            if spec.id in keys or spec.id in existing:
                raise InvalidRequest(
                    f"job id {spec.id!r} is used twice in the workflow; give each job its own id"
                )
            keys[spec.id] = spec
        for spec in specs:
            upstream: list[UpstreamSpec] = []
            for dep in spec.depends_on:
                if dep in keys:
                    upstream.append(UpstreamSpec(dep, keys[dep].type, keys[dep].slide))
                elif dep in existing:
                    up = existing[dep]
                    upstream.append(UpstreamSpec(dep, up.job_type, up.slide))
                else:
                    raise InvalidRequest(
                        f"job {spec.id!r} depends on unknown job {dep!r}: depends_on names "
                        "jobs of the same workflow"
                    )
            params = self.params(spec)
            executor = self.executors[str(spec.type)]
            needs = executor.resources(params)
            if not self.scheduler.fits(needs.items()):
                raise InvalidRequest(
                    f"job {spec.id!r}: {self.unfit_reason(needs)}: "
                    'run it on the CPU (device = "cpu") or on a machine that has it'
                )
            try:
                executor.validate(spec, Path(spec.slide), params, tuple(upstream))
            except ValueError as exc:
                raise InvalidRequest(f"job {spec.id!r}: {exc}") from None
        ordered: list[JobSpec] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(key: str, path: list[str]) -> None:
            if key in existing or state.get(key) == 2:
                return
            if state.get(key) == 1:
                cycle = [*path[path.index(key) :], key]
                raise InvalidRequest(
                    f"dependency cycle: {' -> '.join(cycle)} (each job depends on the next, so "
                    "none can start); remove one of these depends_on"
                )
            state[key] = 1
            for dep in keys[key].depends_on:
                visit(dep, [*path, key])
            state[key] = 2
            ordered.append(keys[key])

        for spec in specs:
            visit(spec.id, [])
        return ordered

    def check_fits(self, job: Job, verb: str) -> None:
        """Refuse to `verb` (retry, rerun) a job whose resources this engine can never give."""
        needs = self.needs(job)
        if not self.scheduler.fits(needs.items()):  # it would wait forever
            raise InvalidRequest(
                f"job {job.key!r} {self.unfit_reason(needs)}: it cannot run on this machine; "
                f'submit it anew with device = "cpu", or {verb} it on a machine that has it'
            )

    def unfit_reason(self, needs: Mapping[str, int]) -> str:
        have = ", ".join(f"{k}={v}" for k, v in sorted(self.scheduler.capacity.items()))
        want = ", ".join(f"{k}={v}" for k, v in sorted(needs.items()) if v > 0)
        return f"needs {want} but this engine has {have or 'none'}"

    def needs(self, job: Job) -> dict[str, int]:
        """Resources a job holds while running (R9); params were validated at submission."""
        executor = self.executors.get(str(job.job_type))
        if executor is None:
            return {}
        try:
            return dict(executor.resources(executor.params_model.model_validate(job.params)))
        except ValidationError:
            return {}  # the job fails with the message when it starts
