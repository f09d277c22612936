"""SEGMENT_CELLS: InstanSeg nuclei over a whole slide, tiled, seam-free, QuPath-ready.

The job reads the slide at the model's pixel size (planning in `cells/plan.py`), segments only
tiles with tissue (the mask of an upstream TISSUE_MASK job on the same slide when the DAG has
one, else its own low-resolution mask), overlaps reading, inference and polygon extraction
(`cells/pipeline.py`), keeps each nucleus exactly once across tile seams (`cells/extract.py`,
`cells/merge.py`) and streams the outputs (`cells/write.py`). Per-tile results are shards: a
restarted job resumes at the tiles it has not finished, and a retried one (a new attempt)
reuses every shard that is valid for the same job, params and slide (`common/shards.py`: a
shard that does not match is redone). Every write is fenced (`common/files.py`): a run the
engine abandoned past `cancel_grace` commits nothing, so its late output never reaches a retry.

Outputs in the results dir: cells.geojson (QuPath detections), cells.csv, preview.png (the
slide with cell outlines), manifest.json (written last); on request cells.geojson.gz, per-tile
label PNGs (`tile_labels`) and artifacts.zip (`archive`).
"""

from __future__ import annotations

import io
import math
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, Field

from wsitui.core.executor import (
    ConfigSection,
    DialogField,
    Executor,
    JobContext,
    JobError,
    Output,
    Total,
    UpstreamJob,
    UpstreamSpec,
)
from wsitui.core.records import JobSpec
from wsitui.jobs.common.archive import write_archive
from wsitui.jobs.common.cells_parquet import CELLS_PARQUET
from wsitui.jobs.common.files import commit_fence, write_atomic
from wsitui.jobs.common.grid import MAX_GRID_TILES
from wsitui.jobs.common.manifest import (
    Artifact,
    JobManifest,
    SlideMeta,
    library_versions,
    write_manifest,
)
from wsitui.jobs.common.mpp import resolve_mpp
from wsitui.jobs.common.shards import ShardOwner, ShardStore
from wsitui.jobs.common.upstream import check_same_slide, load_tissue_mask
from wsitui.jobs.segment_cells.accel import (
    GpuTurns,
)
from wsitui.jobs.segment_cells.backends.local import (
    LocalBackend,
    default_batch,
    load_records,
    shard_key,
)
from wsitui.jobs.segment_cells.backends.protocol import (
    Described,
    Progress,
    TileBackend,
    refusals,
)
from wsitui.jobs.segment_cells.domain import DomainCheck
from wsitui.jobs.segment_cells.extract import CellRecords
from wsitui.jobs.segment_cells.in_tissue import NOTE_SHARE, TISSUE_MARGIN_UM, TissueTest
from wsitui.jobs.segment_cells.memory import check_budget
from wsitui.jobs.segment_cells.merge import settle_seams
from wsitui.jobs.segment_cells.model_info import fill_in_effect, fill_rules
from wsitui.jobs.segment_cells.params import DaskSection, SegmentCellsParams
from wsitui.jobs.segment_cells.plan import CellPlan, plan_tiles
from wsitui.jobs.segment_cells.summary import SUMMARY_COLUMNS, summary_fields
from wsitui.jobs.segment_cells.write import CellWriter
from wsitui.jobs.tissue_mask.mask import MaskSettings, compute_tissue_mask
from wsitui.models import ModelError, resolve
from wsitui.models.device import cuda_device_count, cuda_visible, gpu_resources
from wsitui.models.source import ModelSource
from wsitui.slides.errors import SlideError, quoted
from wsitui.slides.reader import SlideReader, open_slide

if TYPE_CHECKING:
    from wsitui.jobs.segment_cells.backends.dask import DaskClusters
    from wsitui.jobs.segment_cells.dask_info import ClusterStatus

MANIFEST_FORMAT = "wsitui.segment_cells/1"
PREVIEW_FILE = "preview.png"
PREVIEW_MAX = 1024
LABELS_DIR = "labels"
ARCHIVE_FILE = "artifacts.zip"


class TilesMeta(BaseModel):
    tile_size: int  # core, model px
    overlap: int  # model px on each side
    input_size: int  # model input side (read region padded)
    read_level: int
    scale: float  # level-0 px per model px
    total: int
    processed: int
    skipped: int  # without tissue
    batch_size: int
    read_ahead: int = 0  # tiles read ahead of the model (bounded in bytes)


class CellsManifest(JobManifest):
    model: dict[str, Any]  # name, kind, sha256, pixel_size, device, precision, ...
    tiles: TilesMeta
    cells: int
    # detections not written because centred farther than TISSUE_MARGIN_UM from the tissue
    # (counted before the writer's size checks); None where not looked for (tissue "tiles",
    # "all", or a manifest from before 2026-12-06)
    cells_outside_tissue: int | None = None
    mpp: float  # µm per level-0 px used
    mpp_source: str  # slide | assumed
    tissue_source: str  # upstream:<job> | own | all
    tissue_area_mm2: float
    density_per_mm2: float
    backend: str = "local"  # where the tiles ran: local | dask
    # shards found valid from before this run (a resume, or an earlier attempt: a retry
    # resumes), how many of those an earlier attempt wrote, and how many did not match
    # (tampered, corrupt, foreign) and were redone
    shards: dict[str, int] = Field(default_factory=dict)
    # dask: scheduler, dashboard (Dask's own, "" without bokeh), workers, tiles_by_worker
    dask: dict[str, Any] | None = None


def _tissue_area_mm2(mask: np.ndarray, mask_ds: tuple[float, float], mpp: float) -> float:
    return float(mask.sum()) * mask_ds[0] * mask_ds[1] * mpp * mpp / 1e6


def _mask_upstream(upstream: Sequence[UpstreamJob], slide: str) -> UpstreamJob | None:
    for up in upstream:
        if up.job_type == "TISSUE_MASK" and _same_slide(up.slide, slide):
            return up
    return None


def _same_slide(a: str, b: str) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return a == b


class SegmentCellsExecutor(Executor):
    """The Executor for SEGMENT_CELLS jobs (see wsitui.core.executor)."""

    job_type = "SEGMENT_CELLS"
    params_model = SegmentCellsParams
    # Its thread pool (the engine gives it at least max_workers); each job uses the model's
    # own thread budget.
    threads = 2
    short_name = "cells"
    config_section = ConfigSection("dask", DaskSection)
    # where tiles run (set by [dask]) and how many processes run them: the same cells
    result_neutral = frozenset({"backend", "scheduler_address", "workers"})
    totals = (Total("cells", "wsitui_cells_found_total", "Cells found by SEGMENT_CELLS jobs."),)
    outputs: ClassVar[Mapping[Output, str]] = {Output.CELLS: "cells.geojson"}
    dialog_fields = frozenset({DialogField.MODEL, DialogField.DEVICE})
    summary_columns = SUMMARY_COLUMNS

    @classmethod
    def summary_fields(cls, manifest: Mapping[str, Any], results_dir: Path) -> dict[str, object]:
        return summary_fields(manifest, results_dir)

    @classmethod
    def found_line(cls, manifest: Mapping[str, Any]) -> str:
        if "cells" not in manifest:
            return ""
        area = manifest.get("tissue_area_mm2") or 0.0
        return (
            f"cells {manifest['cells']:,} · {manifest.get('density_per_mm2', 0):,.0f} per mm² "
            f"of tissue ({area:.2f} mm², {manifest.get('tissue_source', '?')})"
        )

    @classmethod
    def dashboard_link(cls, stage: str, results_dir: Path) -> str:
        from wsitui.jobs.segment_cells.dask_info import dashboard_link

        return dashboard_link(stage, results_dir)

    def clusters(self) -> list[ClusterStatus]:
        return self.dask_status()

    def __init__(self, dask: DaskClusters | None = None) -> None:
        self._models: Any = None  # wsitui.models.ModelCache, made on first use (imports torch)
        # The session's Dask clients (and LocalCluster), made by the first dask job: importing
        # dask costs ~0.5 s and never happens for local jobs nor on the UI thread.
        self._dask = dask
        self._dask_lock = threading.Lock()
        self.gpu_turns = GpuTurns()  # several GPUs: jobs go to cuda:N in turn

    @property
    def dask(self) -> DaskClusters:
        with self._dask_lock:
            if self._dask is None:
                from wsitui.jobs.segment_cells.backends.dask import DaskClusters

                self._dask = DaskClusters()
            return self._dask

    def dask_status(self) -> list[ClusterStatus]:
        """Dask clusters in use, their dashboards and workers' tiles/s (empty when no job
        used Dask). Cheap and safe on the UI thread: no dask call, no import."""
        return self._dask.status() if self._dask is not None else []

    @property
    def models(self) -> Any:
        if self._models is None:
            from wsitui.models import ModelCache

            self._models = ModelCache()
        return self._models

    def resources(self, params: BaseModel) -> dict[str, int]:
        assert isinstance(params, SegmentCellsParams)
        if params.model == "classical" or params.backend == "dask":
            return {}  # on Dask the cluster's GPU workers hold the GPUs, not this machine
        return gpu_resources(params.device)  # one `gpu` when it will run on CUDA here

    def capacity(self) -> dict[str, int]:
        return {"gpu": _gpu_count()}

    def validate(
        self, spec: JobSpec, slide: Path, params: BaseModel, upstream: Sequence[UpstreamSpec]
    ) -> None:
        assert isinstance(params, SegmentCellsParams)
        if not slide.exists():
            raise ValueError(f"slide {quoted(spec.slide)} does not exist; check the path")
        if not slide.is_file():
            raise ValueError(f"slide {quoted(spec.slide)} is not a file; give the slide file")
        for up in upstream:
            if up.job_type == "TISSUE_MASK" and not _same_slide(up.slide, spec.slide):
                raise ValueError(
                    f"its upstream TISSUE_MASK {up.key!r} is on another slide "
                    f"({quoted(up.slide)}); depend on a mask of {quoted(spec.slide)}"
                )
        refused = refusals(
            params.backend, tile_labels=params.tile_labels, batch_size=params.batch_size
        )
        if refused is not None:
            raise ValueError(refused)
        try:
            resolve(params.model)
        except ModelError as e:
            raise ValueError(str(e)) from None
        if params.device.startswith("cuda") and params.backend == "local" and not cuda_visible():
            raise ValueError(
                f"device {params.device!r} requested but no CUDA GPU is visible here: use "
                "device = 'auto' or 'cpu'"
            )
        on_gpu = params.device.startswith("cuda") or (
            params.device == "auto" and params.backend == "local" and cuda_visible()
        )
        check_budget(
            tile_size=params.tile_size,
            batch=default_batch(params.batch_size, "cuda" if on_gpu else "cpu"),
            max_nucleus_um=params.max_nucleus_um,
            on_gpu=on_gpu,
            budget_gb=params.memory_gb,
        )

    async def close(self) -> None:
        if self._dask is not None:
            import anyio

            await anyio.to_thread.run_sync(self._dask.close)
        if self._models is not None:
            self._models.close()
            self._models = None

    async def run(self, ctx: JobContext) -> None:
        params = ctx.params
        assert isinstance(params, SegmentCellsParams)
        await ctx.to_thread(_CellSegmentation(self, ctx, params).run)


class _CellSegmentation:
    def __init__(
        self, executor: SegmentCellsExecutor, ctx: JobContext, params: SegmentCellsParams
    ) -> None:
        self.executor, self.ctx, self.params = executor, ctx, params
        self.out = ctx.results_dir
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []
        self.note = ""

    def _timed(self, name: str, began: float) -> float:
        now = time.perf_counter()
        self.timings[name] = round(self.timings.get(name, 0.0) + now - began, 4)
        return now

    def warn(self, message: str, short: str) -> None:
        """A warning for the manifest and, from now on, `short` beside the stage every face
        shows (stages are cut at 80 characters)."""
        self.warnings.append(message)
        self.note = short

    def stage(self, stage: str) -> None:
        self.ctx.set_stage(f"{stage} - warning: {self.note}" if self.note else stage)

    def run(self) -> None:
        # Every write this thread (and the helpers it hands the fence to) makes commits only
        # while this run has not been asked to stop: an abandoned run writes nothing more.
        with commit_fence(self.ctx.cancel_requested):
            self._open_and_run()

    def _open_and_run(self) -> None:
        ctx = self.ctx
        started = t = time.perf_counter()
        ctx.set_stage("opening slide")
        try:
            reader = open_slide(ctx.job.slide)
        except SlideError as e:
            raise JobError(str(e)) from e
        try:
            self._run(reader, started, t)
        except SlideError as e:
            raise JobError(str(e)) from e
        except ModelError as e:
            raise JobError(str(e)) from e
        finally:
            reader.close()

    def _run(self, reader: SlideReader, started: float, t: float) -> None:
        ctx, params = self.ctx, self.params
        mpp = resolve_mpp(reader, params.assumed_mpp)
        if mpp.warning:
            self.warnings.append(mpp.warning)
        self.stage("loading model")
        backend = self._backend(resolve(params.model))
        model = backend.describe(ctx.check_cancel)  # loaded only where the tiles run
        if model.is_classical and model.fallback_reason:
            # A note only where something failed (InstanSeg could not be used); the classical
            # model asked for, or the documented default with no pretrained model cached, is
            # what the user expects: the manifest's `model` (and the detail screen) names it.
            self.warnings.append(
                f"model: {model.name}, the classical fallback, not InstanSeg: "
                f"{model.fallback_reason}"
            )
        t = self._timed("load_model", t)

        self.stage("finding tissue")
        tissue, tissue_source = self._tissue(reader, mpp.mpp)
        plan = plan_tiles(
            reader,
            slide_mpp=mpp.mpp,
            model_px=float(model.pixel_size),
            tile_size=params.tile_size,
            max_nucleus_um=params.max_nucleus_um,
            tissue=tissue,
        )
        if plan.total > MAX_GRID_TILES:
            raise JobError(
                f"slide {quoted(ctx.job.slide)}: {plan.total:,} tiles of {params.tile_size} px "
                f"is over the {MAX_GRID_TILES:,} tile limit; use a larger tile_size"
            )
        shards = ShardStore(
            ctx.shards_dir,
            self._shard_plan(reader, plan, model),
            owner=ShardOwner(ctx.job.id, ctx.job.attempt),
            check=CellRecords.from_bytes,
            fence=ctx.cancel_requested,
        )
        t = self._timed("plan", t)
        if not plan.tiles:
            why = (
                f"the tissue mask ({tissue_source}) is empty"
                if tissue_source != "all"
                else "the slide has no tile"
            )
            self.warn(
                f"no tile segmented: {why}, so all {plan.total} tile(s) were skipped; check "
                "the TISSUE_MASK params (e.g. min_object_um2) or set tissue = 'all'",
                "no tile segmented (no tissue found)",
            )

        self.stage("segmenting")
        label_dir = self.out / LABELS_DIR if params.tile_labels else None
        if label_dir is not None:
            label_dir.mkdir(exist_ok=True)

        work = len(plan.tiles)  # the work to do: tissue tiles; skipped ones are shown apart

        def progress(p: Progress) -> None:
            # Backends count skipped tiles as settled; ETA and rate must see only real work.
            done = max(0, p.tiles_done - plan.skipped)
            ctx.report(done, work, {"cells": p.cells, "skipped": plan.skipped})
            if p.odd and not self.note:  # said while it runs, not only in the manifest
                self.note = "tiles look out of domain (not H&E)"
                self.stage("segmenting")

        def save_labels(tile: Any, labels: np.ndarray) -> None:
            assert label_dir is not None
            img = Image.fromarray(np.asarray(labels, np.int32).astype(np.uint16) % 65536)
            buf = io.BytesIO()
            img.save(buf, format="PNG", optimize=False, compress_level=1)
            # From the extractor thread: the fence is handed over explicitly.
            write_atomic(
                label_dir / f"{shard_key(tile)}.png", buf.getvalue(), fence=ctx.cancel_requested
            )

        tile_run = backend.run_tiles(
            reader,
            plan,
            shards,
            min_area_px=params.min_area_um2 / (plan.model_px**2),
            on_progress=progress,
            check_cancel=ctx.check_cancel,
            on_labels=save_labels if label_dir is not None else None,
        )
        self.timings.update(tile_run.timings)
        t = self._timed("segment", t)

        ctx.check_cancel()
        self.stage("merging seams")
        domain = DomainCheck(
            mpp=mpp.mpp,
            max_nucleus_um=params.max_nucleus_um,
            core_um2=(plan.geometry.tile_size * plan.scale * mpp.mpp) ** 2,
        )

        nuclear = [0, 0, 0]  # tiles with counts, detections, dropped by the nuclear check

        def checked(records: Any) -> Any:
            for tile_key, rec in records:
                domain.add(tile_key, rec)
                if len(rec.info) >= 4:
                    nuclear[0] += 1
                    nuclear[1] += int(rec.info[2])
                    nuclear[2] += int(rec.info[3])
                yield tile_key, rec

        keep = settle_seams(checked(self._records(plan, shards)))
        for message in domain.warnings():
            self.warn(message, domain.short())
        t = self._timed("merge", t)
        model_info = dict(tile_run.model)
        if failed := model_info.get("workers_failed"):
            self.warnings.append(
                f"classical worker processes stopped ({failed}); the rest of the tiles ran on "
                "the job's own thread (the same cells, slower): out of memory? set fewer "
                "workers or raise memory_gb"
            )
        if not model.is_classical:
            post = model_info.get("postprocess")
            model_info["postprocess"] = {
                **(post if isinstance(post, dict) else {}),
                "nuclear_check": params.nuclear_check,
            }
            if params.mask_threshold is not None:
                model_info["postprocess"]["mask_threshold"] = params.mask_threshold
            model_info["postprocess"]["classical_fill"] = fill_in_effect(
                model, params.classical_fill
            )
            if (rules := fill_rules(model, params.classical_fill)) is not None:
                model_info["postprocess"]["classical_fill_version"] = rules
            # Counted per tile as segmented (a cell in a tile overlap is counted by each tile
            # that saw it); tiles reused from shards written before the check have no count.
            model_info["nuclear_check"] = {
                "mode": params.nuclear_check,
                "tiles": nuclear[0],
                "detections": nuclear[1],
                "dropped": nuclear[2],
            }

        ctx.check_cancel()
        self.stage("writing outputs")
        base = reader.thumbnail(PREVIEW_MAX)
        preview = Image.fromarray(base)
        draw = ImageDraw.Draw(preview)
        sx = base.shape[1] / reader.dimensions[0]
        sy = base.shape[0] / reader.dimensions[1]
        # tissue = "auto": cells centred on the glass of a tile with some tissue are not
        # written (in_tissue.py); "tiles" keeps them, "all" has no mask.
        in_tissue = (
            TissueTest.of(tissue[0], tissue[1], mpp.mpp)
            if tissue is not None and params.tissue == "auto"
            else None
        )
        outside = 0
        with CellWriter(
            self.out,
            job_id=ctx.job.id,
            mpp=mpp.mpp,
            gz=params.geojson_gz,
            min_area_um2=params.min_area_um2,
            max_area_um2=math.pi * (params.max_nucleus_um / 2) ** 2,
            fence=ctx.cancel_requested,
        ) as w:
            for tile_key, rec in self._records(plan, shards):
                kept = keep[tile_key]
                if in_tissue is not None and len(rec):
                    inside = in_tissue(rec.centroid)
                    outside += int(np.count_nonzero(kept & ~inside))
                    kept = kept & inside
                written = w.add(rec, kept, tile_key)
                _draw_outlines(draw, rec, written, sx, sy)
            cells = w.count
        if outside and outside >= NOTE_SHARE * (cells + outside):
            # no count in the text: a cohort's run summary merges the same note from many jobs
            self.warnings.append(
                f"detections centred more than {TISSUE_MARGIN_UM:g} µm off the tissue mask were "
                "not written (ink, dirt, or tissue the mask left out as debris; the manifest's "
                "cells_outside_tissue counts them); tissue = 'tiles' writes every cell of the "
                "tiles with tissue"
            )
        if w.too_large:
            self.warnings.append(
                f"{w.too_large} detection(s) larger than a {params.max_nucleus_um:g} µm "
                "nucleus (max_nucleus_um) were not written: no nucleus is that large"
            )
        write_atomic(self.out / PREVIEW_FILE, _png(preview))
        mask_area = (
            _tissue_area_mm2(tissue[0], tissue[1], mpp.mpp)
            if tissue is not None
            else reader.dimensions[0] * reader.dimensions[1] * mpp.mpp**2 / 1e6
        )
        artifacts = ["cells.geojson", "cells.csv", CELLS_PARQUET, PREVIEW_FILE]
        if params.geojson_gz:
            artifacts.append("cells.geojson.gz")
        if params.archive:
            extra = (
                [f"{LABELS_DIR}/{p.name}" for p in sorted(label_dir.iterdir())] if label_dir else []
            )
            write_archive(self.out, ARCHIVE_FILE, artifacts + extra)
            artifacts.append(ARCHIVE_FILE)
        t = self._timed("write", t)
        self.timings["total"] = round(time.perf_counter() - started, 4)
        manifest = CellsManifest(
            format=MANIFEST_FORMAT,
            job_id=ctx.job.id,
            job_type=SegmentCellsExecutor.job_type,
            created_at=time.time(),
            params=params.model_dump(mode="json"),
            slide=SlideMeta.of(reader),
            artifacts=[Artifact.file(self.out, a, a.rsplit(".", 1)[-1]) for a in artifacts],
            timings=self.timings,
            versions=library_versions(),
            warnings=self.warnings,
            model=model_info,
            tiles=TilesMeta(
                tile_size=params.tile_size,
                overlap=plan.overlap,
                input_size=plan.input_size,
                read_level=plan.read_level,
                scale=plan.scale,
                total=plan.total,
                processed=len(plan.tiles),
                skipped=plan.skipped,
                batch_size=tile_run.batch_size,
                read_ahead=tile_run.read_ahead,
            ),
            cells=cells,
            cells_outside_tissue=outside if in_tissue is not None else None,
            mpp=mpp.mpp,
            mpp_source=mpp.source,
            tissue_source=tissue_source,
            tissue_area_mm2=round(mask_area, 6),
            density_per_mm2=round(cells / mask_area, 3) if mask_area > 0 else 0.0,
            backend=backend.name,
            dask=tile_run.dask,
            shards=shards.stats.as_dict(),
        )
        write_manifest(self.out, manifest)
        if label_dir is None and not ctx.cancel_requested():  # fenced, as every write
            shutil.rmtree(self.out / LABELS_DIR, ignore_errors=True)
        ctx.report(work, work, {"cells": cells, "skipped": plan.skipped})

    def _backend(self, source: ModelSource) -> TileBackend:
        if self.params.backend == "dask":  # only the workers load the model
            from wsitui.jobs.segment_cells.backends.dask import DaskBackend

            return DaskBackend(self.executor.dask, source, self.params, self.stage)
        ex = self.executor
        return LocalBackend(ex.models, ex.gpu_turns, _gpu_count, source, self.params)

    def _tissue(
        self, reader: SlideReader, mpp: float
    ) -> tuple[tuple[np.ndarray, tuple[float, float]] | None, str]:
        if self.params.tissue == "all":
            return None, "all"
        up = _mask_upstream(self.ctx.upstream, self.ctx.job.slide)
        if up is not None:
            # Not a reason to compute our own: the workflow's mask outputs would stay those of
            # another file while this job's follow the new one.
            warning = check_same_slide(up.results_dir, up.key, up.job_type, reader)
            if warning:
                self.warnings.append(warning)
            try:
                return load_tissue_mask(up.results_dir), f"upstream:{up.key}"
            except JobError as e:
                self.warnings.append(f"upstream mask unusable ({e}); computed its own")
        settings = MaskSettings(assumed_mpp=mpp)  # the pixel size this job already settled
        tm = compute_tissue_mask(reader, settings, check_cancel=self.ctx.check_cancel)
        return (tm.mask, tm.downsample), "own"

    def _shard_plan(self, reader: SlideReader, plan: CellPlan, model: Described) -> dict[str, Any]:
        """What the shards were computed for: a resumed job reuses them only if all agree."""
        st = Path(reader.path).stat()
        key: dict[str, Any] = {
            "slide": str(reader.path),
            "slide_size": st.st_size,
            "slide_mtime": st.st_mtime_ns,
            "slide_inode": st.st_ino,
            "slide_dimensions": list(reader.dimensions),
            "model": getattr(model, "sha256", ""),
            "model_name": str(getattr(model, "name", "")),
            "scale": plan.scale,
            "tile_size": plan.geometry.tile_size,
            "overlap": plan.overlap,
            "band": plan.band,
            "min_area_um2": self.params.min_area_um2,
            "max_nucleus_um": self.params.max_nucleus_um,
            "nuclear_check": self.params.nuclear_check,
        }
        if self.params.mask_threshold is not None:  # set only when set: earlier shards still fit
            key["mask_threshold"] = self.params.mask_threshold
        if (rules := fill_rules(model, self.params.classical_fill)) is not None:
            key["classical_fill"] = rules  # shards from before the fill or other rules: redone
        return key

    def _records(self, plan: CellPlan, shards: ShardStore) -> Any:
        for tile in plan.tiles:
            rec = load_records(shards, tile)
            if rec is None:  # removed or spoiled after it was segmented: redone on retry
                raise JobError(
                    f"tile {tile.col},{tile.row} lost its result while the job ran; retry the "
                    "job (the tile is redone, the other tiles are reused)"
                )
            yield (tile.col, tile.row), rec


def _draw_outlines(
    draw: ImageDraw.ImageDraw, rec: CellRecords, keep: np.ndarray, sx: float, sy: float
) -> None:
    for i in np.nonzero(keep)[0]:
        ring = rec.ring(int(i))
        pts = [(float(x * sx), float(y * sy)) for x, y in ring]
        if len(pts) >= 3:
            draw.polygon(pts, outline=(20, 200, 40))


def _gpu_count() -> int:
    """NVIDIA GPUs visible, without importing torch (the engine asks at start-up)."""
    return cuda_device_count()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()
