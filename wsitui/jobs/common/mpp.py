"""The pixel size a job computes with: the slide's own when plausible, else an assumed one.

A file that says 1e-9 or 1e9 µm/px is wrong, and believing it makes a mask of 1x1 px (and a
job that SUCCEEDED with 0 % tissue) or a read of the whole of level 0. Such a value is
replaced, loudly: the job records the warning in its manifest and shows it in its stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsitui.slides.reader import SlideReader

# Brightfield scanners: ~0.1 (100x) to ~10 µm/px (1x). Outside a wide margin around that, the
# number is not a pixel size.
PLAUSIBLE_MPP = (0.02, 50.0)


@dataclass(frozen=True, slots=True)
class ResolvedMpp:
    mpp: float  # µm per level-0 px used by the job
    source: str  # "slide" or "assumed"
    warning: str | None  # one line when the slide's own value was not used


def resolve_mpp(reader: SlideReader, assumed: float) -> ResolvedMpp:
    lo, hi = PLAUSIBLE_MPP
    declared = reader.mpp
    if declared is None:
        return ResolvedMpp(
            assumed, "assumed", f"slide has no pixel size; assumed {assumed:g} µm/px"
        )
    if not lo <= declared <= hi:
        return ResolvedMpp(
            assumed,
            "assumed",
            f"slide says {declared:g} µm/px, outside the plausible {lo:g}-{hi:g}; "
            f"assumed {assumed:g} µm/px (set the job's assumed_mpp if that is wrong)",
        )
    return ResolvedMpp(declared, "slide", None)
