"""MEASURE_CELLS job params: what a user sets in the config, the add-job dialog or the CLI."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wsitui.jobs.common.cpus import available_cpus, check_workers

# The job's own process loads and writes (~25 % of its CPU time, measured), which bounds the
# speed-up near 4x: by default no more worker processes than this.
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """Worker processes when a job does not say: one per CPU, at most MAX_DEFAULT_WORKERS."""
    return min(MAX_DEFAULT_WORKERS, available_cpus())


class MeasureCellsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # strict (each scalar; a stain vector may be a TOML array): `expansion_um = true` was a
    # 1 µm ring and `workers = true` one worker, without a word.
    expansion_um: float = Field(
        default=5.0,
        strict=True,
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
        strict=True,
        gt=0,
        le=255,
        description="light through glass (0-255) for optical density; absent: estimated",
    )
    tile_size: int = Field(
        default=1024, ge=128, le=4096, strict=True, description="px at the cells' scale"
    )
    workers: int | None = Field(
        default=None,
        strict=True,
        description="processes that measure the tiles, 1 to the CPU count (1: the job's own "
        f"thread); absent: one per CPU, at most {MAX_DEFAULT_WORKERS}. The outputs are the same",
    )

    @field_validator("workers")
    @classmethod
    def _workers(cls, v: int | None) -> int | None:
        return check_workers(v, f"one per CPU, at most {MAX_DEFAULT_WORKERS}")

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
