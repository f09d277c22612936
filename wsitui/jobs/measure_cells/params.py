"""MEASURE_CELLS job params: what a user sets in the config, the add-job dialog or the CLI."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator


class MeasureCellsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    expansion_um: float = Field(
        default=5.0,
        ge=0,
        le=50,
        description="width of the ring (cytoplasm) around each nucleus, clipped at neighbours",
    )
    stain_vectors: tuple[tuple[float, float, float], tuple[float, float, float]] | None = Field(
        default=None,
        description="haematoxylin and eosin OD vectors (r, g, b); absent: estimated per slide "
        "(Macenko)",
    )
    background: float | None = Field(
        default=None,
        gt=0,
        le=255,
        description="light through glass (0-255) for optical density; absent: estimated",
    )
    tile_size: int = Field(default=1024, ge=128, le=4096, description="px at the cells' scale")

    @field_validator("stain_vectors")
    @classmethod
    def _vectors(
        cls, v: tuple[tuple[float, float, float], ...] | None
    ) -> tuple[tuple[float, float, float], ...] | None:
        if v is None:
            return v
        for vec, name in zip(v, ("haematoxylin", "eosin"), strict=True):
            if any(c < 0 for c in vec) or math.hypot(*vec) == 0:
                raise ValueError(
                    f"the {name} stain vector {list(vec)} must be non-negative and not all zero"
                )
        a, b = (tuple(c / math.hypot(*vec) for c in vec) for vec in v)
        if sum(x * y for x, y in zip(a, b, strict=True)) > 0.999:
            raise ValueError("the two stain vectors are parallel; give two different stains")
        return v
