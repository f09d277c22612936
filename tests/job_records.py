"""A `Job` snapshot for tests of what reads jobs (phases, percents, rates, cohort rows), with
the defaults every such test gave by hand: workflow `w` of tenant `t`, a TISSUE_MASK on
`s.svs`, no dependencies, no params."""

from __future__ import annotations

from typing import Any

from wsitui.core.records import Job, JobState


def job_record(
    key: str,
    state: JobState = JobState.PENDING,
    *,
    branch: str = "A",
    deps: tuple[str, ...] = (),
    slide: str = "s.svs",
    **fields: Any,
) -> Job:
    """Job `w.<key>` in `branch`, depending on the keys `deps`; `fields` over Job's defaults."""
    return Job(
        id=f"w.{key}",
        key=key,
        workflow_id="w",
        tenant="t",
        job_type="TISSUE_MASK",
        slide=slide,
        branch=branch,
        depends_on=tuple(f"w.{d}" for d in deps),
        params={},
        state=state,
        **fields,
    )
