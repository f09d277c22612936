"""TISSUE_MASK job params: what a user sets in the config or the add-job dialog."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wsitui.core.pydantic_errors import first_problem
from wsitui.jobs.common.mpp import PLAUSIBLE_MPP

_Float = dict(strict=True, allow_inf_nan=False)


class TissueMaskParams(BaseModel):
    """A TISSUE_MASK job's params (the engine validates them at submission)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tile_size: Annotated[int, Field(strict=True, ge=16, le=16384)] = 512  # grid tile, px at level
    level: Annotated[int, Field(strict=True, ge=0, le=32)] = 0  # level the grid is defined at
    # A tile with at least this much tissue is processed downstream.
    min_tissue_fraction: Annotated[float, Field(ge=0.0, le=1.0, **_Float)] = 0.05
    # Resolution the mask is computed at (µm/px); masks are coarse by design.
    target_mpp: Annotated[float, Field(ge=0.5, le=100.0, **_Float)] = 8.0
    min_object_um2: Annotated[float, Field(ge=0.0, le=1e9, **_Float)] = 10_000.0  # specks dropped
    min_hole_um2: Annotated[float, Field(ge=0.0, le=1e9, **_Float)] = 10_000.0  # holes filled
    # Level-0 µm/px when the slide does not say, or says something implausible.
    assumed_mpp: Annotated[float, Field(ge=PLAUSIBLE_MPP[0], le=PLAUSIBLE_MPP[1], **_Float)] = 0.5
    # Edges are re-cut, and the mask written, at about this µm/px from a finer level (0: off).
    edge_mpp: Annotated[float, Field(ge=0.0, le=100.0, **_Float)] = 2.0
    tile_masks: Annotated[bool, Field(strict=True)] = False  # tiles/tile_<col>_<row>.png
    archive: Annotated[bool, Field(strict=True)] = False  # artifacts.zip of every output

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> TissueMaskParams:
        """Parse job params; ValueError with one line naming the param and the fix."""
        try:
            return cls.model_validate(dict(params))
        except ValidationError as e:
            problem = first_problem(e)
            name = problem.dotted or "params"
            if problem.type == "extra_forbidden":
                known = ", ".join(cls.model_fields)
                raise ValueError(
                    f"unknown param {name!r} for TISSUE_MASK; use one of: {known}"
                ) from None
            raise ValueError(
                f"param {name!r}: {problem.msg.lower()}, got {problem.input!r}"
            ) from None


DEFAULTS = TissueMaskParams()
