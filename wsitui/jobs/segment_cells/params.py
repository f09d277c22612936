"""SEGMENT_CELLS job params: what a user sets in the config, the add-job dialog or the CLI.

IO settings (tile size, overlap, batch) are kept apart from the model and from the engine; the
defaults were chosen by measuring throughput (see benchmarks/bench_cells.py and README).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wsitui.core.executor import SectionModel
from wsitui.core.pydantic_errors import first_problem
from wsitui.jobs.common.cpus import check_workers
from wsitui.jobs.segment_cells.memory import DEFAULT_BUDGET_GB
from wsitui.models.device import check_device_name

_ADDRESS = re.compile(r"\A((tcp|tls|ucx|inproc)://)?[A-Za-z0-9_.\-\[\]:/]{1,250}\Z")


class SegmentCellsParams(BaseModel):
    # allow_inf_nan=False: nan or inf in any float param is refused as "not a finite number"
    # (nan slipped through as "must be <= 200", and compared false everywhere after).
    # strict: `min_area_um2 = true` was 1.0, `tile_labels = 1` true and `tile_size = "512"`
    # 512, without a word (TISSUE_MASK's params and the config's own numbers are strict too).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    model: str | None = Field(
        default=None,
        description="a pretrained InstanSeg name, 'shipped', a model folder, a TorchScript .pt "
        "file, or 'classical'; absent: a cached pretrained brightfield_nuclei, else 'classical'",
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N | mps")
    # Measured with the shipped model on tissue (benchmarks/bench_cells.py --tile-sizes): useful
    # throughput is flat for model inputs of ~576-896 px and falls beyond (InstanSeg's own
    # post-processing grows faster than the area); 576 + 2 x 48 overlap = 672 px inputs.
    tile_size: int = Field(default=576, ge=64, le=4096, description="core px at model scale")
    max_nucleus_um: float = Field(
        default=20.0, gt=0, le=200, description="largest nucleus diameter; sets the overlap"
    )
    batch_size: int | Literal["auto"] = Field(
        default="auto",
        description="tiles per model call; auto: 1 on CPU, from free memory on a GPU; bounded by "
        "memory_gb",
    )
    memory_gb: float = Field(
        default=DEFAULT_BUDGET_GB,
        gt=0,
        le=4096,
        description="memory budget of the job (GB); tile_size and batch_size must fit in it "
        "(checked at submission, see cells/memory.py)",
    )
    workers: int | None = Field(
        default=None,
        strict=True,
        description="the classical model: processes that segment tiles at once, 1 to the CPU "
        "count (1: the job's own thread); absent: one per CPU within memory_gb, on jobs of 12 "
        "tiles or more. InstanSeg models use torch's threads instead. The cells are the same",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="auto: bf16 on CUDA when its cells agree with fp32's, else fp32"
    )
    nuclear_check: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: an InstanSeg model's detections not darker in haematoxylin than "
        "their surroundings are dropped (wsitui/models/nuclear_gate.py); off: kept",
    )
    classical_fill: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="auto: what the model says (the shipped model: on; other exports: off); on: "
        "an InstanSeg model's labels are completed with the classical fallback's nuclei where "
        "it drew none or only pieces of one (wsitui/models/classical_fill.py); off: not",
    )
    # Measured 2026-12-05 (run 3 of the shipped model, README "Whole outlines"): 0.5 outlined big
    # vesicular nuclei whole (generated `vesicular` look 0.906 -> 0.980) where the model's 0.7
    # drew parts of them, and separated fewer touching nuclei (touching recall 0.933 -> 0.834).
    # Run 4 draws them whole at 0.7 (0.995); 0.5 draws them fuller (median area +7 %).
    mask_threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="InstanSeg's mask threshold (how far each instance grows from its seed); "
        "unset: the model's own (the shipped model's 0.7); 0.5 outlines big vesicular tumour "
        "nuclei whole. The classical fallback has none",
    )
    assumed_mpp: float = Field(default=0.5, gt=0, description="µm/px for slides without one")
    # 2 µm² (1.6 µm across) is smaller than any nucleus. It was 6: InstanSeg outlines sit about
    # half a pixel inside a nucleus, and at 6 µm² jobs dropped small and pale true nuclei (held-out
    # generated slides, shipped model: recall 0.990 -> 0.937, `pale` look F1 1.000 -> 0.746).
    min_area_um2: float = Field(default=2.0, ge=0, description="smaller instances are dropped")
    tissue: Literal["auto", "tiles", "all"] = Field(
        default="auto",
        description="auto: only tiles with tissue (an upstream TISSUE_MASK's mask, else its "
        "own), and only cells centred in that tissue or within 8 µm of it; tiles: those "
        "tiles, every cell they hold; all: every tile",
    )
    geojson_gz: bool = Field(default=False, description="also write cells.geojson.gz")
    tile_labels: bool = Field(default=False, description="write per-tile label PNGs")
    archive: bool = Field(default=False, description="zip the outputs into artifacts.zip")
    backend: Literal["local", "dask"] = Field(
        default="local",
        description="where the tiles run: local (this machine's model) or dask (a Dask cluster)",
    )
    scheduler_address: str | None = Field(
        default=None,
        description="dask only: an existing scheduler, e.g. tcp://10.0.0.5:8786; absent: a "
        "local Dask cluster for the session",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device_name(v)

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"batch_size must be 'auto' or a whole number >= 1, not {v}")
        return v

    @field_validator("workers")
    @classmethod
    def _workers(cls, v: int | None) -> int | None:
        return check_workers(v, "one per CPU within memory_gb")

    @field_validator("scheduler_address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        if not _ADDRESS.match(v):
            raise ValueError(
                f"scheduler_address {v!r} is not a Dask scheduler address: use e.g. tcp://host:8786"
            )
        return v

    @model_validator(mode="after")
    def _address_needs_dask(self) -> SegmentCellsParams:
        if self.scheduler_address is not None and self.backend != "dask":
            raise ValueError(
                "scheduler_address is set but backend is 'local': set backend = 'dask' or "
                "remove scheduler_address"
            )
        return self


class DaskSection(SectionModel):
    """[dask] in the config file: defaults for SEGMENT_CELLS jobs that do not set `backend` /
    `scheduler_address` themselves (a job's own params win)."""

    backend: Literal["local", "dask"] = "local"
    scheduler_address: str | None = None  # absent: a local Dask cluster for the session

    @model_validator(mode="after")
    def _valid(self) -> DaskSection:
        try:
            SegmentCellsParams(backend=self.backend, scheduler_address=self.scheduler_address)
        except ValidationError as exc:  # its one line, not pydantic's report
            raise ValueError(first_problem(exc).msg) from None
        return self

    def apply(self, params: dict[str, Any]) -> dict[str, Any]:
        out = dict(params)
        if "backend" in self.model_fields_set:
            out.setdefault("backend", self.backend)
        if self.scheduler_address is not None and out.get("backend") == "dask":
            out.setdefault("scheduler_address", self.scheduler_address)
        return out
