"""The TOML config shared by `wsitui run` and the TUI: strict, with errors that name the key.

Reading is careful about what the path is: only a regular file of at most `MAX_CONFIG_BYTES` is
read (a FIFO would hang, `/dev/zero` would grow without bound), and nesting deeper than
`MAX_DEPTH` is refused before it can exhaust the interpreter's stack.

Job types come from `wsitui.jobs.registry`: a job's `type` is checked against it, and each job
type's own table (its `config_section`, e.g. `[dask]`) is read and applied to its jobs' params.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from wsitui.core.admission import Limits
from wsitui.core.executor import ConfigSection, SectionModel
from wsitui.core.paths import file_kind
from wsitui.core.pydantic_errors import first_problem
from wsitui.core.records import (
    BranchName,
    JobKey,
    JobSpec,
    TenantId,
    WorkflowName,
    WorkflowSpec,
)
from wsitui.jobs import registry
from wsitui.models.source import looks_like_path
from wsitui.session.toml_text import config_text, toml_problem

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # thousands of jobs fit in well under 1 MiB
MAX_DEPTH = 32  # tables and arrays nested in each other (params included)


def _not_empty(value: object) -> object:
    """`data_dir = ""` read as Path(""), the config's own folder: state.db and results/ were
    written beside the config. An empty path is a slip; "." says the folder on purpose."""
    if isinstance(value, str) and not value.strip():
        raise ValueError('the path is empty; give a path ("." is the config\'s folder)')
    return value


ConfigPath = Annotated[Path, BeforeValidator(_not_empty)]  # a path the config file gives


class ConfigError(Exception):
    """One line: the file, the key path, what is wrong and a hint."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SchedulerConfig(_Strict):
    # strict numbers: `max_workers = true` or `= "4"` is a mistake to name, not a 1 or a 4
    max_workers: int = Field(4, ge=1, le=256, strict=True)
    max_active_users: int = Field(3, ge=1, le=1000, strict=True)
    # Seconds a canceled or interrupted job gets to reach a tile boundary before it is dropped.
    cancel_grace: float = Field(5.0, gt=0, le=3600, strict=True, allow_inf_nan=False)


MAX_QUEUED = 10_000_000  # jobs: far above any real queue, far below what exhausts memory


class LimitsConfig(_Strict):
    """Admission control of submissions (see wsitui/core/admission.py); 0 switches one off."""

    # Defaults let a config of a few thousand workflows in (it is submitted at once, at start)
    # and stop only a runaway client; a shared deployment sets its own.
    # submissions per second per tenant
    rate: float = Field(20.0, ge=0, le=1_000_000, strict=True, allow_inf_nan=False)
    burst: int = Field(2_000, ge=0, le=1_000_000, strict=True)  # submissions at once per tenant
    # PENDING jobs of one tenant / in total. Bounded: each is a row in memory and on disk.
    max_queued_per_tenant: int = Field(50_000, ge=0, le=MAX_QUEUED, strict=True)
    max_queued: int = Field(100_000, ge=0, le=MAX_QUEUED, strict=True)

    def limits(self) -> Limits:
        off = not self.rate or not self.burst  # either at 0 switches the rate limit off
        return Limits(
            rate=None if off else self.rate,
            burst=max(1, self.burst),
            max_queued_per_tenant=self.max_queued_per_tenant or None,
            max_queued=self.max_queued or None,
        )


class PathsConfig(_Strict):
    data_dir: ConfigPath | None = None  # default: XDG data dir
    results: ConfigPath | None = None  # default: <data_dir>/results
    events: ConfigPath | None = None  # JSONL event log; none by default


class UIConfig(_Strict):
    image_protocol: Literal["auto", "sixel", "tgp", "halfcell"] = "auto"
    tenant: TenantId | None = None  # tenant shown first in the TUI


class SampleConfig(_Strict):
    """A synthetic slide generated on first use when the file is missing."""

    path: ConfigPath
    size: str = "4096x3072"
    seed: int = Field(0, ge=0, strict=True)


class JobConfig(_Strict):
    id: JobKey
    type: str  # a registered job type (wsitui.jobs.registry)
    slide: ConfigPath | None = None  # None only in a cohort workflow's template (see `slides`)
    branch: BranchName = "main"
    depends_on: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _registered(cls, v: str) -> str:
        if registry.executor_class(v) is None:
            raise ValueError(registry.unknown_job_type(v))
        return v


class WorkflowConfig(_Strict):
    tenant: TenantId
    name: WorkflowName = Field(min_length=1, max_length=200)
    jobs: list[JobConfig] = Field(min_length=1)
    # A cohort: globs (relative to the config) or a CSV with a `path` column; `jobs` is then a
    # template run once per slide (wsitui/session/cohort.py).
    slides: list[str] | str | None = None
    match: Literal["stat", "hash"] = "stat"  # how a rerun knows a slide: size+mtime, or sha256

    @field_validator("slides", mode="before")
    @classmethod
    def _slides_shape(cls, v: object) -> object:
        """A glob, a list of globs or a CSV path; pydantic named its union's members in the key
        path ("workflows[0].slides.list[str]: Input should be a valid list")."""
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, list) and all(isinstance(g, str) for g in v):
            return v
        raise ValueError(
            'not a slide list; give a list of globs, e.g. ["cohort/*.svs"], or the path of '
            "a CSV with a `path` column, in quotes"
        )

    @model_validator(mode="after")
    def _slides(self) -> WorkflowConfig:
        from wsitui.session.cohort import check_template

        check_template(self)
        return self

    def spec(self) -> WorkflowSpec:
        return WorkflowSpec(
            name=self.name,
            jobs=tuple(
                JobSpec(
                    id=j.id,
                    type=j.type,
                    slide=str(j.slide),
                    branch=j.branch,
                    depends_on=tuple(j.depends_on),
                    params=j.params,
                )
                for j in self.jobs
            ),
        )


class Config(_Strict):
    scheduler: SchedulerConfig = SchedulerConfig()
    limits: LimitsConfig = LimitsConfig()
    paths: PathsConfig = PathsConfig()
    ui: UIConfig = UIConfig()
    samples: list[SampleConfig] = Field(default_factory=list)
    workflows: list[WorkflowConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_workflows(self) -> Config:
        # (tenant, name) is how a rerun finds a workflow again: it must be unambiguous.
        seen: dict[tuple[str, str], int] = {}
        for i, wf in enumerate(self.workflows):
            first = seen.setdefault((wf.tenant, wf.name), i)
            if first != i:
                raise ValueError(
                    f"workflows[{i}] repeats tenant {wf.tenant!r} and name {wf.name!r} of "
                    f"workflows[{first}]; give each workflow of a tenant its own name"
                )
        return self

    def section(self, section: ConfigSection) -> SectionModel:
        """A job type's table in this config as written, else its defaults."""
        value = dict(self).get(section.name)
        return value if isinstance(value, section.model) else section.model()


def config_model() -> type[Config]:
    """`Config` with a table for each config section the registered job types declare."""
    fields: dict[str, Any] = {}
    for section in registry.config_sections():
        if section.name in Config.model_fields:
            raise ValueError(f"config section [{section.name}] is taken; name it otherwise")
        fields[section.name] = (section.model, Field(default_factory=section.model))
    return create_model("Config", __base__=Config, **fields) if fields else Config


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_config_bytes(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_CONFIG_BYTES; never blocks on a FIFO."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; check the path") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: is {file_kind(st.st_mode)}; a config is a TOML file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {st.st_size:,} bytes is too large for a config "
            f"(at most {MAX_CONFIG_BYTES:,}); check the path"
        )
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO since the stat, open must not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ConfigError(f"{path}: is not a regular file; a config is a TOML file")
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: too large for a config (over {MAX_CONFIG_BYTES:,} bytes)")
    return raw


def _too_deep(data: object) -> bool:
    """True when tables/arrays nest deeper than MAX_DEPTH (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def load_config(path: Path) -> Config:
    """Read, validate and resolve a config: relative paths become relative to the file."""
    raw = read_config_bytes(path)
    try:
        text = config_text(raw)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {toml_problem(str(exc), text)}") from None
    except RecursionError:
        data = None
    if data is None or _too_deep(data):
        raise ConfigError(
            f"{path}: tables or arrays nested more than {MAX_DEPTH} levels deep; flatten them"
        )
    try:
        config = config_model().model_validate(data)
    except ValidationError as exc:
        problem = first_problem(exc)
        more = problem.more
        where = _loc(problem.loc)
        line = f"{path}: {where + ': ' if where else ''}{problem.described}"
        if more:
            line += f" [and {more} more problem{'s' if more > 1 else ''}]"
        raise ConfigError(line) from None
    from wsitui.session.cohort import resolve_slide_sources

    base = path.resolve().parent
    return resolve_slide_sources(_resolve(config, path, base), path, base)


def _resolve(config: Config, path: Path, base: Path) -> Config:
    resolved: dict[Path, Path] = {}  # many jobs name the same slide: resolve it once

    def fix(p: Path | None, key: str) -> Path | None:
        if p is None:
            return None
        if p in resolved:
            return resolved[p]
        if "\x00" in str(p):
            raise ConfigError(f"{path}: {key}: a path cannot contain a NUL character; fix it")
        try:
            resolved[p] = (base / p.expanduser()).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # e.g. a symlink loop
            raise ConfigError(
                f"{path}: {key}: path {p} cannot be resolved ({exc}); fix it"
            ) from None
        return resolved[p]

    return config.model_copy(
        update={
            "paths": config.paths.model_copy(
                update={
                    k: fix(getattr(config.paths, k), f"paths.{k}")
                    for k in ("data_dir", "results", "events")
                }
            ),
            "samples": [
                s.model_copy(update={"path": fix(s.path, f"samples[{i}].path")})
                for i, s in enumerate(config.samples)
            ],
            "workflows": [
                w.model_copy(
                    update={
                        "jobs": [
                            j.model_copy(
                                update={
                                    "slide": fix(j.slide, f"workflows[{wi}].jobs[{ji}].slide"),
                                    "params": _model_path(
                                        _with_section(config, j),
                                        base,
                                        fix,
                                        f"workflows[{wi}].jobs[{ji}]",
                                    ),
                                }
                            )
                            for ji, j in enumerate(w.jobs)
                        ]
                    }
                )
                for wi, w in enumerate(config.workflows)
            ],
        }
    )


def _with_section(config: Config, job: JobConfig) -> dict[str, Any]:
    """A job's params with the defaults of its job type's config section, if it has one."""
    executor = registry.executor_class(job.type)
    section = executor.config_section if executor is not None else None
    return config.section(section).apply(job.params) if section is not None else job.params


def _model_path(
    params: dict[str, Any], base: Path, fix: Callable[[Path, str], Path | None], key: str
) -> dict[str, Any]:
    """A `model` param that names a folder or a .pt file is relative to the config file too
    (a pretrained name or 'classical' is left as it is)."""
    model = params.get("model")
    if not isinstance(model, str) or not model:
        return params
    if not looks_like_path(model) and not (base / model).exists():
        return params
    return {**params, "model": str(fix(Path(model), f"{key}.params.model"))}
