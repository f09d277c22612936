"""MEASURE_CELLS: per-cell shape and H&E stain measurements of a SEGMENT_CELLS job's cells.

The job reads the cells of its upstream SEGMENT_CELLS job (same slide) from that job's
cells.geojson (`source.py`), at the pixel size the cells were segmented at (the upstream
manifest's `mpp` x `tiles.scale`). It estimates the slide's stain vectors once (Macenko on a
low-resolution image, `stain.py`, unless `stain_vectors` is given), then measures tile by tile
(`measure.py`): each tile's cells are rasterised, their shape taken (`shape.py`), the slide read
and deconvolved into haematoxylin and eosin OD, and OD statistics taken in each nucleus and in
its ring of `expansion_um`. Each tile's rows are a shard (`common/shards.py`): a resumed or
retried job measures only the tiles it has not finished. Tiles are loaded on a thread and
measured in `workers` processes (`pipeline.py`; one: on this thread), a few in flight, and
written as they are done in tile order, so the outputs do not depend on `workers`. Cancel is
checked at every tile and while waiting for one.

Outputs in the results dir: cells.geojson (the upstream cells with the measurements merged in,
QuPath's `properties.measurements`), measurements.parquet (one row per cell) and manifest.json
(written last, with the stain vectors and background used).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from wsitui.core.executor import Executor, JobContext, JobError, UpstreamJob, UpstreamSpec
from wsitui.core.records import JobSpec
from wsitui.jobs.common.files import commit_fence
from wsitui.jobs.common.manifest import (
    MANIFEST_FILE,
    Artifact,
    JobManifest,
    SlideMeta,
    library_versions,
    write_manifest,
)
from wsitui.jobs.common.shards import ShardOwner, ShardStore
from wsitui.jobs.common.upstream import check_same_slide
from wsitui.jobs.measure_cells.measure import Scale, load_tile, measure_input, read_scaled
from wsitui.jobs.measure_cells.names import ALL
from wsitui.jobs.measure_cells.params import MeasureCellsParams, default_workers
from wsitui.jobs.measure_cells.pipeline import Pending, TilePipeline, measure_in_worker
from wsitui.jobs.measure_cells.source import CELLS_FILE, CellIndex, index_cells
from wsitui.jobs.measure_cells.stain import Stains, slide_stains
from wsitui.jobs.measure_cells.write import GEOJSON_FILE, PARQUET_FILE, MeasureWriter
from wsitui.slides.errors import SlideError, quoted
from wsitui.slides.reader import SlideReader, open_slide

MANIFEST_FORMAT = "wsitui.measure_cells/1"
STAIN_THUMB = 1024  # px, longest side of the image the background is estimated on
STAIN_WINDOWS = 32  # windows around cells the stain vectors are estimated on
STAIN_WINDOW = 128  # px at the cells' pixel size
# A worker process takes ~1 s to start (spawn: importing numpy, scipy, ...), the measuring of
# ~4,000 cells: a slide gets one worker per this many cells, so a small one stays serial.
CELLS_PER_WORKER = 10_000
NEEDS = "needs a SEGMENT_CELLS upstream on the same slide (depends_on = [its id])"


class MeasureManifest(JobManifest):
    upstream: str  # key of the SEGMENT_CELLS job measured
    cells: int
    mpp: float  # µm per level-0 px (the upstream's)
    um_per_px: float  # µm per measurement px (the cells' pixel size)
    expansion_px: float
    stains: dict[str, Any]  # hematoxylin, eosin (unit OD vectors), background, source
    measurements: list[str]
    tiles: dict[str, int]  # total (with cells), tile_size
    shards: dict[str, int]


def _same_slide(a: str, b: str) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return a == b


def _cells_upstream(upstream: Sequence[UpstreamJob], slide: str) -> UpstreamJob | None:
    for up in upstream:
        if up.job_type == "SEGMENT_CELLS" and _same_slide(up.slide, slide):
            return up
    return None


class MeasureCellsExecutor(Executor):
    """The Executor for MEASURE_CELLS jobs (see wsitui.core.executor)."""

    job_type = "MEASURE_CELLS"
    params_model = MeasureCellsParams
    threads = 2
    short_name = "measure"
    result_neutral = frozenset({"workers"})  # the outputs are the same whatever it is

    @classmethod
    def found_line(cls, manifest: Mapping[str, Any]) -> str:
        stains = manifest.get("stains")
        if "cells" not in manifest or not isinstance(stains, dict):
            return ""
        return (
            f"cells measured {manifest['cells']:,} · {len(manifest.get('measurements') or [])} "
            f"measurements each · stain vectors: {stains.get('source', '?')}"
        )

    def validate(
        self, spec: JobSpec, slide: Path, params: BaseModel, upstream: Sequence[UpstreamSpec]
    ) -> None:
        if not slide.exists():
            raise ValueError(f"slide {quoted(spec.slide)} does not exist; check the path")
        if not slide.is_file():
            raise ValueError(f"slide {quoted(spec.slide)} is not a file; give the slide file")
        cells = [u for u in upstream if u.job_type == "SEGMENT_CELLS"]
        if not cells:
            raise ValueError(NEEDS)
        if not any(_same_slide(u.slide, spec.slide) for u in cells):
            raise ValueError(
                f"its upstream SEGMENT_CELLS {cells[0].key!r} is on another slide "
                f"({quoted(cells[0].slide)}); {NEEDS}"
            )

    async def run(self, ctx: JobContext) -> None:
        params = ctx.params
        assert isinstance(params, MeasureCellsParams)
        await ctx.to_thread(_CellMeasurement(ctx, params).run)


class _CellMeasurement:
    def __init__(self, ctx: JobContext, params: MeasureCellsParams) -> None:
        self.ctx, self.params = ctx, params
        self.workers = params.workers if params.workers is not None else default_workers()
        self.out = ctx.results_dir
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []

    def _timed(self, name: str, began: float) -> float:
        now = time.perf_counter()
        self.timings[name] = round(self.timings.get(name, 0.0) + now - began, 4)
        return now

    def run(self) -> None:
        with commit_fence(self.ctx.cancel_requested):
            up = _cells_upstream(self.ctx.upstream, self.ctx.job.slide)
            if up is None:
                raise JobError(NEEDS)
            self.ctx.set_stage("opening slide")
            try:
                reader = open_slide(self.ctx.job.slide)
            except SlideError as e:
                raise JobError(str(e)) from e
            try:
                self._run(reader, up)
            except SlideError as e:
                raise JobError(str(e)) from e
            finally:
                reader.close()

    def _upstream_meta(self, up: UpstreamJob) -> tuple[float, float, str]:
        """(µm per level-0 px, level-0 px per cell px, sha256 of cells.geojson) of `up`."""
        path = up.results_dir / MANIFEST_FILE
        try:
            meta = json.loads(path.read_text())
            mpp, scale = float(meta["mpp"]), float(meta["tiles"]["scale"])
            sha = next(a["sha256"] for a in meta["artifacts"] if a["path"] == CELLS_FILE)
        except (OSError, ValueError, KeyError, TypeError, StopIteration) as e:
            raise JobError(
                f"{quoted(path)} is missing or unreadable ({type(e).__name__}); rerun the "
                f"SEGMENT_CELLS job {up.key!r}"
            ) from e
        if not (mpp > 0 and scale > 0):
            raise JobError(f"{quoted(path)} has no usable pixel size; rerun {up.key!r}")
        return mpp, scale, str(sha)

    def _run(self, reader: SlideReader, up: UpstreamJob) -> None:
        ctx, params = self.ctx, self.params
        started = t = time.perf_counter()
        warning = check_same_slide(up.results_dir, up.key, up.job_type, reader)  # cells fit it
        if warning:
            self.warnings.append(warning)
        mpp, scale, cells_sha = self._upstream_meta(up)
        sc = Scale(scale, mpp * scale, params.expansion_um / (mpp * scale))

        ctx.set_stage("indexing cells")
        index = index_cells(up.results_dir, ctx.check_cancel)
        tiles = _tiles(index, params.tile_size * scale)
        t = self._timed("index", t)
        if len(index) == 0:
            self.warnings.append(f"the SEGMENT_CELLS job {up.key!r} found no cells: none measured")

        ctx.set_stage("estimating stain vectors")
        thumb = reader.thumbnail(STAIN_THUMB)
        tissue = _around_cells(reader, index, scale) if params.stain_vectors is None else thumb
        stains, warning = slide_stains(thumb, tissue, params.stain_vectors, params.background)
        if warning:
            self.warnings.append(warning)
        t = self._timed("stains", t)

        st = Path(reader.path).stat()
        shards = ShardStore(
            ctx.shards_dir,
            {
                "format": MANIFEST_FORMAT,
                "slide": str(reader.path),
                "slide_size": st.st_size,
                "slide_mtime": st.st_mtime_ns,
                "upstream": up.job_id,
                "cells_sha256": cells_sha,
                "scale": scale,
                "mpp": mpp,
                "ring_px": sc.ring_px,
                "tile_size": params.tile_size,
                "stains": _stains_json(stains),
                "measurements": list(ALL),
            },
            owner=ShardOwner(ctx.job.id, ctx.job.attempt),
            fence=ctx.cancel_requested,
        )
        ctx.set_stage("measuring")
        total, done, cells = len(tiles), 0, 0
        ctx.report(0, total, {"cells": 0})
        workers = min(self.workers, total, max(1, len(index) // CELLS_PER_WORKER))
        # Each tile is written as soon as it is measured, in tile order, from the Features it
        # was measured with (cells.geojson is parsed once); the outputs stay hidden until the
        # writer closes.
        # With workers, each worker reads its tiles' pixels (sending them costs more).
        pipe = TilePipeline(
            lambda own: load_tile(reader, index, own, sc, pixels=workers == 1),
            partial(measure_input, stains=stains, sc=sc)
            if workers == 1
            else partial(measure_in_worker, stains=stains, sc=sc, slide=str(reader.path)),
            workers,
            ctx.check_cancel,
        )
        window: deque[tuple[str, np.ndarray, bool, Pending]] = deque()
        # The pipeline first: a writer that cannot open its files still ends its pool and
        # removes its workers' results folder.
        with pipe, MeasureWriter(self.out, fence=ctx.cancel_requested) as w:

            def finish() -> None:
                nonlocal t, done, cells
                key, own, reused, pending = window.popleft()
                features, rows = pipe.take(pending)
                if not reused:
                    shards.put_array(key, rows)
                t = self._timed("measure", t)
                w.add(features, rows, key)
                t = self._timed("write", t)
                done, cells = done + 1, cells + len(own)
                ctx.report(done, total, {"cells": cells})

            for key, own in tiles:
                ctx.check_cancel()
                rows = self._shard(shards, key, own)
                if rows is None:
                    window.append((key, own, False, pipe.start(own)))
                else:
                    window.append((key, own, True, pipe.ready(index.features(own), rows)))
                while len(window) > pipe.depth:
                    finish()
            while window:
                finish()
            ctx.set_stage("writing outputs")
        t = self._timed("write", t)
        self.timings["total"] = round(time.perf_counter() - started, 4)
        names = [GEOJSON_FILE, PARQUET_FILE]
        write_manifest(
            self.out,
            MeasureManifest(
                format=MANIFEST_FORMAT,
                job_id=ctx.job.id,
                job_type=MeasureCellsExecutor.job_type,
                created_at=time.time(),
                params=params.model_dump(mode="json"),
                slide=SlideMeta.of(reader),
                artifacts=[Artifact.file(self.out, n, n.rsplit(".", 1)[-1]) for n in names],
                timings=self.timings,
                versions=library_versions(),
                warnings=self.warnings,
                upstream=up.key,
                cells=w.count,
                mpp=mpp,
                um_per_px=sc.um_per_px,
                expansion_px=round(sc.ring_px, 4),
                stains=_stains_json(stains),
                measurements=list(ALL),
                tiles={"total": total, "tile_size": params.tile_size},
                shards=shards.stats.as_dict(),
            ),
        )
        ctx.report(total, total, {"cells": w.count})

    @staticmethod
    def _shard(shards: ShardStore, key: str, own: np.ndarray) -> np.ndarray | None:
        rows = shards.get_array(key)
        if rows is None:
            return None
        if rows.shape != (len(own), 1 + len(ALL)) or not np.array_equal(rows[:, 0], own):
            shards.discard(key)  # not this tile's cells: measured again
            return None
        return rows


def _around_cells(reader: SlideReader, index: CellIndex, scale: float) -> np.ndarray:
    """RGB pixels (n, 3) of STAIN_WINDOWS windows at the cells' pixel size, centred on cells
    spread evenly over the file: tissue with nuclei resolved, a few MB however big the slide."""
    if len(index) == 0:
        return np.zeros((0, 3), np.uint8)
    picks = np.unique(np.linspace(0, len(index) - 1, STAIN_WINDOWS).astype(np.int64))
    half = STAIN_WINDOW / 2 * scale
    w, h = reader.dimensions
    parts = []
    for i in picks.tolist():
        b = index.bbox[i]
        x0 = int(min(max(0.0, (b[0] + b[2]) / 2 - half), max(0.0, w - 2 * half)))
        y0 = int(min(max(0.0, (b[1] + b[3]) / 2 - half), max(0.0, h - 2 * half)))
        parts.append(read_scaled(reader, x0, y0, STAIN_WINDOW, STAIN_WINDOW, scale).reshape(-1, 3))
    return np.concatenate(parts)


def _tiles(index: CellIndex, size: float) -> list[tuple[str, np.ndarray]]:
    """(shard key, the cells whose bounding-box centre is in the tile), tiles in row order."""
    if len(index) == 0:
        return []
    cx = (index.bbox[:, 0] + index.bbox[:, 2]) / 2
    cy = (index.bbox[:, 1] + index.bbox[:, 3]) / 2
    col = np.floor(cx / size).astype(np.int64)
    row = np.floor(cy / size).astype(np.int64)
    order = np.lexsort((col, row))
    keys = np.stack([row[order], col[order]], axis=1)
    cuts = np.nonzero((np.diff(keys, axis=0) != 0).any(axis=1))[0] + 1
    out = []
    for part in np.split(order, cuts):
        out.append((f"t{int(col[part[0]])}_{int(row[part[0]])}", np.sort(part)))
    return out


def _stains_json(s: Stains) -> dict[str, Any]:
    return {
        "hematoxylin": list(s.hematoxylin),
        "eosin": list(s.eosin),
        "background": round(s.background, 4),
        "source": s.source,
    }
