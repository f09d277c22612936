"""The job types this install runs: one list, read by the engine's owner, the config and faces.

A job type is its executor class (see `wsitui.core.executor`): its name, params, config section,
outputs and what a face may show all come from there. Adding a job type is one line in
`JOB_TYPES`; nothing else names it (README: "Add a job type").
"""

from __future__ import annotations

from wsitui.core.executor import ConfigSection, Executor
from wsitui.core.suggest import did_you_mean
from wsitui.jobs.measure_cells.executor import MeasureCellsExecutor
from wsitui.jobs.segment_cells.executor import SegmentCellsExecutor
from wsitui.jobs.tissue_mask.executor import TissueMaskExecutor

JOB_TYPES: list[type[Executor]] = [TissueMaskExecutor, SegmentCellsExecutor, MeasureCellsExecutor]


def default_executors() -> list[Executor]:
    """One executor of each registered job type, for an engine."""
    return [cls() for cls in JOB_TYPES]


def job_type_names() -> tuple[str, ...]:
    return tuple(cls.job_type for cls in JOB_TYPES)


def executor_class(name: str) -> type[Executor] | None:
    """The registered executor class of job type `name`, None when there is none."""
    return next((cls for cls in JOB_TYPES if cls.job_type == name), None)


def unknown_job_type(name: str) -> str:
    """The one line that refuses a job type nobody registered."""
    names = job_type_names()
    return f"unknown job type {name!r}{did_you_mean(name, names)}; use one of: {', '.join(names)}"


def short_name(name: str) -> str:
    """A job card's title for job type `name` (the name itself when it declares none)."""
    cls = executor_class(name)
    return (cls.short_name if cls is not None else "") or name


def config_sections() -> list[ConfigSection]:
    """The config tables the registered job types read, each once (ValueError on a clash)."""
    sections: dict[str, ConfigSection] = {}
    for cls in JOB_TYPES:
        section = cls.config_section
        if section is None:
            continue
        if sections.setdefault(section.name, section) != section:
            raise ValueError(
                f"job type {cls.job_type} declares config section [{section.name}] which "
                "another job type declares differently; give it its own name"
            )
    return list(sections.values())
