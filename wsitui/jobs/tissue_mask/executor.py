"""TISSUE_MASK: where the tissue is, computed at low resolution and mapped onto a tile grid.

The mask is computed from the whole slide at about `target_mpp` (8 µm/px by default): from the
pyramid level nearest that, area-averaged down when that level is much finer (a slide with no
coarse level, e.g. a single-level TIFF, is reduced block by block, so memory stays bounded but
every tile is decoded); then grey level, an Otsu split refined by a local threshold half-way
between the glass and the tissue around each pixel (soft edges, pale or grainy stain, see
`mask_from_rgb`), small pieces cut at their own level, objects told from dust, debris and ink
by colour as well as area, and holes smaller than a given area in µm² filled. An empty mask
(or no tile over min_tissue_fraction) is a warning in the manifest and the stage.
It is then mapped onto the job's tile grid (`tile_size` px at `level`) as an exact per-tile
tissue fraction; a tile is tissue when that is at least `min_tissue_fraction` (a tile exactly
at the threshold is kept). Downstream jobs load the grid and mask with
`wsitui.jobs.common.upstream`.

Budgets, checked before anything big is allocated: the mask image has at most
MAX_MASK_PIXELS (a JobError names the size and the fix), the grid at most MAX_GRID_TILES. A
pixel size the slide states that is not plausible (1e-9 or 1e9 µm/px) is replaced by
`assumed_mpp`, loudly: in the job's stage and in the manifest's `warnings`.

Resumable: the slide is read in horizontal bands of the mask image; each band is kept as a
shard under `shards_dir` and recorded in the checkpoint, so a resumed job reads only the bands
it has not got yet and its progress (grid tiles whose pixels are read) never goes back. With
only one band nothing is kept or recorded: the checkpoint never claims what a resumed job
could not restore, so its first progress is what it continues from.

Outputs in the results dir: tissue_mask.png, tiles.json, preview.png, tissue.geojson (QuPath
annotations, level-0 px) and manifest.json (written last); opt in to per-tile mask PNGs
(`tile_masks`) and artifacts.zip (`archive`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from wsitui.core.executor import (
    CheckpointStore,
    Executor,
    JobContext,
    JobError,
    Output,
    UpstreamSpec,
)
from wsitui.core.records import JobSpec
from wsitui.jobs.common.archive import write_archive
from wsitui.jobs.common.files import commit_fence, write_atomic
from wsitui.jobs.common.geojson import TISSUE, feature_collection, mask_polygons, write_geojson
from wsitui.jobs.common.grid import TILES_FILE, GridGeometry, TileGrid
from wsitui.jobs.common.manifest import (
    MANIFEST_FILE,
    Artifact,
    SlideMeta,
    library_versions,
    write_manifest,
)
from wsitui.jobs.common.shards import ShardStore
from wsitui.jobs.common.upstream import MASK_FILE
from wsitui.jobs.tissue_mask.mask import (
    MaskPlan,
    TissueMask,
    compute_tissue_mask,
    plan_mask,
)
from wsitui.jobs.tissue_mask.outputs import (
    ARCHIVE_FILE,
    GEOJSON_FILE,
    JOB_TYPE,
    PREVIEW_FILE,
    TILES_DIR,
    GridMeta,
    MaskMeta,
    TissueManifest,
    clear_outputs,
    png_bytes,
    render_preview,
)
from wsitui.jobs.tissue_mask.params import DEFAULTS, TissueMaskParams
from wsitui.jobs.tissue_mask.plan import grid_geometry
from wsitui.slides.errors import SlideError, quoted
from wsitui.slides.reader import SlideReader, open_slide

# ---------------------------------------------------------------------------- the job


def empty_warning(tm: TissueMask, grid: TileGrid, params: TissueMaskParams) -> str | None:
    """A one-line warning when the mask is empty or no tile holds enough of it, else None."""
    if not tm.mask.any():
        return (
            "no tissue found: the mask is empty, so downstream jobs segment nothing; check the "
            "slide, or run SEGMENT_CELLS with tissue = 'all'"
        )
    if not grid.tissue_tiles:
        return (
            f"no tile has {params.min_tissue_fraction:g} of tissue (mask covers "
            f"{tm.mask.mean():.1%} of the slide); lower min_tissue_fraction or tile_size"
        )
    return None


def _noop(*_a: Any) -> None:
    return None


@dataclass
class JobHooks:
    """How the job talks to whoever runs it: the engine's JobContext, or nothing (a script)."""

    report: Callable[..., None] = _noop  # (tiles_done, tiles_total)
    set_stage: Callable[[str], None] = _noop
    check_cancel: Callable[[], None] = _noop
    restart_progress: Callable[[str], None] = _noop
    checkpoint: CheckpointStore | None = None
    shards_dir: Path | None = None  # default: results_dir / "shards"


def run_tissue_mask(
    slide: Path,
    results_dir: Path,
    params: TissueMaskParams = DEFAULTS,
    *,
    job_id: str = "",
    hooks: JobHooks | None = None,
) -> TissueManifest:
    """The whole job, synchronously. SlideError/OSError come out as JobError (one line)."""
    t0 = time.perf_counter()
    hooks = hooks or JobHooks()
    try:
        with open_slide(slide) as reader:
            return _TissueMasking(reader, Path(results_dir), params, job_id, hooks, t0).run()
    except SlideError as e:
        raise JobError(str(e)) from e
    except MemoryError as e:
        raise JobError(
            f"slide {quoted(slide)}: out of memory while making the tissue mask; "
            "raise target_mpp or free memory"
        ) from e
    except OSError as e:
        raise JobError(
            f"cannot write results to {quoted(results_dir)}: {e.strerror or e}; "
            "check free space and permissions"
        ) from e


class _TissueMasking:
    def __init__(
        self,
        reader: SlideReader,
        out: Path,
        params: TissueMaskParams,
        job_id: str,
        hooks: JobHooks,
        t0: float,
    ) -> None:
        self.reader, self.out, self.params, self.job_id = reader, out, params, job_id
        self.hooks, self.t0 = hooks, t0
        self.done = 0
        self.total = 0

    def progress(self, done: int) -> None:
        self.done = max(self.done, done)
        self.hooks.report(self.done, self.total)

    def run(self) -> TissueManifest:
        h, reader, params = self.hooks, self.reader, self.params
        h.check_cancel()
        geometry = grid_geometry(reader, params)  # budgets before any pixel is read
        self.total = geometry.count
        plan = plan_mask(reader, params)
        read_stage = f"reading level {plan.level}"
        if plan.mpp_assumed and reader.mpp is not None:  # faces show ~80 characters of a stage
            read_stage += f"; slide MPP {reader.mpp:g} implausible, assumed {plan.mpp0:g}"
        h.set_stage(read_stage)

        tm = compute_tissue_mask(
            reader,
            params,
            check_cancel=h.check_cancel,
            bands=lambda p: self.read_bands(p, geometry),
        )
        h.check_cancel()
        h.set_stage("masking")
        t_grid = time.perf_counter()
        grid = TileGrid.build(
            geometry, reader.dimensions, tm.mask, tm.downsample, params.min_tissue_fraction
        )
        timings = {**tm.timings, "grid_s": time.perf_counter() - t_grid}
        empty = empty_warning(tm, grid, params)
        if empty is not None:  # downstream jobs would segment nothing: say so everywhere
            tm = replace(tm, warnings=(*tm.warnings, empty))
            h.set_stage(empty)
        h.check_cancel()
        h.set_stage("writing outputs")
        return self.write(tm, grid, timings)

    # -- reading, band by band --------------------------------------------------------------

    def read_bands(self, plan: MaskPlan, geometry: GridGeometry) -> np.ndarray:
        """The mask image, each band kept as a shard: a resumed job reads only missing ones."""
        h, reader = self.hooks, self.reader
        shards = ShardStore(
            h.shards_dir or self.out / "shards",
            {
                "kind": "tissue_mask.bands/1",
                "slide": str(reader.path),
                "dimensions": list(reader.dimensions),
                "level": plan.level,
                "size": list(plan.size),
                "bands": [list(b) for b in plan.bands],
                "mpp0": plan.mpp0,
            },
        )
        # A grid row's tiles are read once every mask row under them is: the progress unit.
        _, ye = geometry.level0_edges(reader.dimensions)
        last_row = np.ceil(ye[1:] / plan.downsample[1] - 1e-9).astype(np.int64)

        def tiles_read(rows_done: int) -> int:
            return geometry.cols * int(np.count_nonzero(last_row <= rows_done))

        # Shards are whole (atomic) and of this plan: keep the leading run of them.
        image = np.empty((plan.size[1], plan.size[0], 3), np.uint8)
        have = 0
        for r0, r1 in plan.bands:
            band = shards.get_array(f"band_{r0}") if shards.reused else None
            if band is None or band.shape != (r1 - r0, plan.size[0], 3):
                break
            image[r0:r1] = band
            have += 1
        saved = h.checkpoint.load() if h.checkpoint is not None else None
        claimed = int((saved or {}).get("bands_done", 0))
        if claimed > have:
            h.restart_progress(
                f"{claimed - have} of {claimed} saved band(s) of the mask image were missing "
                "or unreadable; reading them again"
            )
            self.done = 0
        self.progress(tiles_read(plan.bands[have - 1][1]) if have else 0)

        def on_block(_d: int, _t: int) -> None:
            h.check_cancel()

        for i in range(have, len(plan.bands)):
            r0, r1 = plan.bands[i]
            h.check_cancel()
            image[r0:r1] = band = reader.read_level_scaled(
                plan.level, plan.size, on_block, rows=(r0, r1)
            )
            done = tiles_read(r1) if i + 1 < len(plan.bands) else self.total
            # One band: reading it again is as cheap as a shard, so none is kept, and the
            # checkpoint claims nothing a resumed job could not restore (a claim without its
            # shard would make every resume restart its progress: 100 % -> 0 % -> 100 %).
            if len(plan.bands) > 1:
                shards.put_array(f"band_{r0}", band)
                if h.checkpoint is not None:
                    h.checkpoint.save({"bands_done": i + 1}, done)
            self.progress(done)
        return image

    # -- outputs -----------------------------------------------------------------------------

    def write(self, tm: TissueMask, grid: TileGrid, timings: dict[str, float]) -> TissueManifest:
        out, reader, params = self.out, self.reader, self.params
        t_write = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        clear_outputs(out)
        write_atomic(out / MASK_FILE, png_bytes(tm.mask))
        write_atomic(out / TILES_FILE, grid.model_dump_json().encode())
        write_atomic(out / PREVIEW_FILE, png_bytes(render_preview(reader, tm.mask, tm.image)))
        self.hooks.check_cancel()
        polygons = mask_polygons(tm.mask, tm.downsample)
        write_geojson(out / GEOJSON_FILE, feature_collection(polygons, TISSUE))
        artifacts = [
            Artifact.file(out, name, kind)
            for name, kind in (
                (MASK_FILE, "tissue_mask"),
                (TILES_FILE, "tile_grid"),
                (PREVIEW_FILE, "preview"),
                (GEOJSON_FILE, "tissue_annotations"),
            )
        ]
        tile_pngs = self.write_tile_masks(tm, grid) if params.tile_masks else {}
        if params.tile_masks:
            artifacts.append(
                Artifact(
                    path=f"{TILES_DIR}/",
                    kind="tile_masks",
                    bytes=sum(len(b) for b in tile_pngs.values()),
                    count=len(tile_pngs),
                )
            )
        timings["write_s"] = time.perf_counter() - t_write
        timings["total_s"] = time.perf_counter() - self.t0
        manifest = TissueManifest(
            job_id=self.job_id,
            created_at=time.time(),
            params=params.model_dump(),
            slide=SlideMeta.of(reader),
            mask=MaskMeta(
                file=MASK_FILE,
                shape=(int(tm.mask.shape[0]), int(tm.mask.shape[1])),
                downsample=tm.downsample,
                level_read=tm.level,
                mpp=tm.mpp,
                mpp_assumed=tm.mpp_assumed,
                threshold=tm.threshold,
                tissue_fraction=float(tm.mask.mean()),
            ),
            grid=GridMeta(
                file=TILES_FILE,
                tile_size=grid.tile_size,
                level=grid.level,
                cols=grid.cols,
                rows=grid.rows,
                tiles_total=grid.cols * grid.rows,
                tissue_tiles=len(grid.tissue_tiles),
            ),
            regions=len(polygons),
            artifacts=artifacts,
            archive=ARCHIVE_FILE if params.archive else None,
            timings={k: round(v, 4) for k, v in timings.items()},
            versions=library_versions(),
            warnings=list(tm.warnings),
        )
        write_manifest(out, manifest)
        if params.archive:
            names = [a.path for a in artifacts if not a.path.endswith("/")] + [MANIFEST_FILE]
            extra = {f"{TILES_DIR}/{n}": b for n, b in tile_pngs.items()}
            write_archive(out, ARCHIVE_FILE, names, extra)
        self.progress(self.total)
        return manifest

    def write_tile_masks(self, tm: TissueMask, grid: TileGrid) -> dict[str, bytes]:
        tiles_dir = self.out / TILES_DIR
        tiles_dir.mkdir()
        pngs: dict[str, bytes] = {}
        for col, row in grid.tissue_tiles:
            self.hooks.check_cancel()
            y0, y1, x0, x1 = grid.mask_box(col, row)
            name = f"tile_{col}_{row}.png"
            pngs[name] = png_bytes(tm.mask[y0:y1, x0:x1])
            write_atomic(tiles_dir / name, pngs[name])
        return pngs


# ------------------------------------------------------------------------------ executor


def tissue_area_mm2(manifest: Mapping[str, Any]) -> float | None:
    """Tissue area in mm² from a TISSUE_MASK manifest (mask fraction × mask area), None when
    the manifest does not say."""
    mask = manifest.get("mask") or {}
    try:
        rows, cols = mask["shape"]
        return float(mask["tissue_fraction"]) * rows * cols * float(mask["mpp"]) ** 2 / 1e6
    except (KeyError, TypeError, ValueError):
        return None


class TissueMaskExecutor(Executor):
    """The Executor for TISSUE_MASK jobs (see wsitui.core.executor)."""

    job_type = JOB_TYPE
    short_name = "mask"
    outputs: ClassVar[Mapping[Output, str]] = {Output.TISSUE: GEOJSON_FILE}
    params_model = TissueMaskParams
    threads = 2
    summary_columns = ("tissue_area_mm2",)

    @classmethod
    def found_line(cls, manifest: Mapping[str, Any]) -> str:
        area = tissue_area_mm2(manifest)
        if area is None:
            return ""
        if area <= 0:
            return "no tissue found"  # the manifest's warning (shown below it) says what next
        share = float(manifest["mask"]["tissue_fraction"])
        line = f"tissue {area:,.2f} mm² · {share:.1%} of the slide"
        grid = manifest.get("grid")
        if isinstance(grid, dict) and "tissue_tiles" in grid and "tiles_total" in grid:
            line += f" · {grid['tissue_tiles']:,} of {grid['tiles_total']:,} tiles"
        return line

    @classmethod
    def summary_fields(cls, manifest: Mapping[str, Any], results_dir: Path) -> dict[str, object]:
        area = tissue_area_mm2(manifest)  # unrounded: the summary derives cells per mm² from it
        return {} if area is None else {"tissue_area_mm2": area}

    def validate(
        self,
        spec: JobSpec,
        slide: Path,
        params: BaseModel,
        upstream: Sequence[UpstreamSpec] = (),
    ) -> None:
        # Existence only: the slide is opened when the job runs, not at submission.
        if not slide.exists():
            raise ValueError(f"slide {quoted(spec.slide)} does not exist; check the path")
        if not slide.is_file():
            raise ValueError(f"slide {quoted(spec.slide)} is not a file; give the slide file")

    async def run(self, ctx: JobContext) -> None:
        params = ctx.params
        if not isinstance(params, TissueMaskParams):
            try:
                params = TissueMaskParams.parse(ctx.job.params)
            except ValueError as e:
                raise JobError(str(e)) from e
        hooks = JobHooks(
            report=ctx.report,
            set_stage=ctx.set_stage,
            check_cancel=ctx.check_cancel,
            restart_progress=ctx.restart_progress,
            checkpoint=ctx.checkpoint,
            shards_dir=ctx.shards_dir,
        )
        slide = Path(ctx.job.slide).expanduser()

        def work() -> None:
            # Writes commit only while this run is not asked to stop: a run abandoned past
            # cancel_grace writes nothing into its retry's results dir.
            with commit_fence(ctx.cancel_requested):
                run_tissue_mask(slide, ctx.results_dir, params, job_id=ctx.job.id, hooks=hooks)

        await ctx.to_thread(work)
