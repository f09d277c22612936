"""TISSUE_MASK: where the tissue is, computed at low resolution and mapped onto a tile grid.

The mask is computed from the whole slide at about `target_mpp` (8 µm/px by default): from the
pyramid level nearest that, area-averaged down when that level is much finer (a slide with no
coarse level, e.g. a single-level TIFF, is reduced block by block, so memory stays bounded but
every tile is decoded); then grey level, Otsu threshold, and objects and holes smaller than a
given area in µm² are removed / filled. It is then mapped onto the job's tile grid (`tile_size`
px at `level`) as an exact per-tile tissue fraction; a tile is tissue when that is at least
`min_tissue_fraction`. Downstream jobs (SEGMENT_CELLS) load the grid with `load_tile_grid` to
skip background tiles.

Outputs in the results dir: tissue_mask.png, tiles.json, tiles/tile_<col>_<row>.png (mask of
each tissue tile at the mask's resolution), preview.png, manifest.json and artifacts.zip.
The whole job takes about a second even on a 40k x 30k pyramidal slide, so it does not
checkpoint: a resumed job simply starts again.
"""

from __future__ import annotations

import hashlib
import io
import math
import platform
import shutil
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np
import openslide
from PIL import Image
from pydantic import BaseModel, ConfigDict
from scipy import ndimage

import wsitui
from wsitui.core.executor import JobContext, JobError
from wsitui.core.models import JobSpec, JobType
from wsitui.slides.errors import SlideError, quoted
from wsitui.slides.reader import SlideReader, open_slide

MASK_FILE = "tissue_mask.png"
TILES_FILE = "tiles.json"
TILES_DIR = "tiles"
PREVIEW_FILE = "preview.png"
MANIFEST_FILE = "manifest.json"
ARCHIVE_FILE = "artifacts.zip"
TILES_FORMAT = "wsitui.tiles/1"
MANIFEST_FORMAT = "wsitui.tissue_mask/1"
PREVIEW_MAX = 1024
# The preview reads the slide itself when that is cheap: a level of at most this many times the
# preview's pixels. Otherwise (no coarse level) it reuses the image the mask was computed from.
PREVIEW_READ_RATIO = 16
MIN_CONTRAST = 8.0  # grey levels between Otsu classes; below that the level is one class


# ------------------------------------------------------------------------------- params


@dataclass(frozen=True, slots=True)
class TissueMaskParams:
    tile_size: int = 512  # grid tile side, px at `level`
    level: int = 0  # pyramid level the grid is defined at
    min_tissue_fraction: float = 0.05  # a tile with at least this much tissue is processed
    target_mpp: float = 8.0  # resolution the mask is computed at (µm/px)
    min_object_um2: float = 10_000.0  # smaller tissue specks are dropped (QuPath's default)
    min_hole_um2: float = 10_000.0  # smaller holes inside tissue are filled
    assumed_mpp: float = 0.5  # level-0 µm/px when the slide does not say

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TissueMaskParams:
        """Parse job params; raise ValueError with one line naming the param and the fix."""
        known = [f.name for f in fields(cls)]
        for name in params:
            if name not in known:
                raise ValueError(
                    f"unknown param {name!r} for TISSUE_MASK; use one of: {', '.join(known)}"
                )
        values: dict[str, Any] = {}
        for name, lo, hi in (("tile_size", 16, 16384), ("level", 0, 32)):
            if name in params:
                v = params[name]
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise ValueError(
                        f"param {name!r} must be an integer from {lo} to {hi}, got {v!r}"
                    )
                values[name] = v
        for name, lo, hi, lo_open in (
            ("min_tissue_fraction", 0.0, 1.0, False),
            ("target_mpp", 0.0, 100.0, True),
            ("min_object_um2", 0.0, 1e9, False),
            ("min_hole_um2", 0.0, 1e9, False),
            ("assumed_mpp", 0.0, 100.0, True),
        ):
            if name in params:
                v = params[name]
                ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                ok = ok and (lo < v if lo_open else lo <= v) and v <= hi
                if not ok:
                    rng = f"above {lo:g} up to {hi:g}" if lo_open else f"from {lo:g} to {hi:g}"
                    raise ValueError(f"param {name!r} must be a number {rng}, got {v!r}")
                values[name] = float(v)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULTS = TissueMaskParams()


# ------------------------------------------------------------------------- the mask itself


@dataclass(frozen=True, slots=True)
class TissueMask:
    mask: np.ndarray  # bool (rows, cols), True = tissue
    downsample: tuple[float, float]  # level-0 px per mask px, (x, y)
    level: int  # pyramid level that was read
    mpp: float  # µm per mask px (x)
    mpp_assumed: bool  # the slide had no mpp; params' assumed_mpp was used
    threshold: float | None  # Otsu grey threshold; None when the level had no contrast
    timings: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = field(default=None, repr=False, compare=False)  # RGB it came from


def _area_px(um2: float, mpp_x: float, mpp_y: float) -> float:
    return um2 / (mpp_x * mpp_y)


def clean_mask(mask: np.ndarray, min_object_px: float, min_hole_px: float) -> np.ndarray:
    """Drop 8-connected objects < min_object_px; fill enclosed 4-connected holes < min_hole_px."""
    out = mask.copy()
    if min_object_px > 1:
        lab, n = ndimage.label(out, structure=np.ones((3, 3), bool))
        small = np.bincount(lab.ravel(), minlength=n + 1) < min_object_px
        small[0] = False
        out[small[lab]] = False
    if min_hole_px > 1:
        lab, n = ndimage.label(~out)
        small = np.bincount(lab.ravel(), minlength=n + 1) < min_hole_px
        small[0] = False
        # Background touching the border is outside the tissue, not a hole.
        small[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = False
        out[small[lab]] = True
    return out


def otsu(hist: np.ndarray) -> tuple[int, float, float]:
    """Otsu on a grey histogram: (t, mean of <= t, mean of > t).

    t maximises the between-class variance; the 256-bin histogram is ~10x cheaper than pixels.
    With a single occupied level there is no split: both means are that level.
    """
    levels = np.arange(len(hist), dtype=np.float64)
    w0 = np.cumsum(hist, dtype=np.float64)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * levels)
    valid = (w0 > 0) & (w1 > 0)
    if not valid.any():
        mean = float(s0[-1] / max(w0[-1], 1.0))
        return int(mean), mean, mean
    mu0 = np.divide(s0, w0, out=np.zeros_like(s0), where=valid)
    mu1 = np.divide(s0[-1] - s0, w1, out=np.zeros_like(s0), where=valid)
    between = np.where(valid, w0 * w1 * (mu0 - mu1) ** 2, -1.0)
    t = int(np.argmax(between))
    return t, float(mu0[t]), float(mu1[t])


def compute_tissue_mask(
    reader: SlideReader,
    *,
    target_mpp: float = DEFAULTS.target_mpp,
    min_object_um2: float = DEFAULTS.min_object_um2,
    min_hole_um2: float = DEFAULTS.min_hole_um2,
    assumed_mpp: float = DEFAULTS.assumed_mpp,
    check_cancel: Callable[[], None] | None = None,
) -> TissueMask:
    """Tissue mask of the whole slide at about target_mpp µm/px.

    Reads the level nearest target_mpp; when that is much finer (no coarse level), it is
    area-averaged down block by block (SlideReader.read_level_scaled), never held whole.
    check_cancel is called between blocks: on a big single-level slide this read is the long
    part of the job, and a cancel should not wait for it.
    """
    t0 = time.perf_counter()
    mpp0 = reader.mpp if reader.mpp is not None else assumed_mpp
    want_ds = max(1.0, target_mpp / mpp0)
    level = reader.best_level_for_downsample(want_ds)
    lw, lh = reader.level_dimensions[level]
    factor = want_ds / reader.level_downsamples[level]
    # Within 1.25x of the target the level is used as it is (no resampling blur).
    size = (lw, lh) if factor <= 1.25 else (max(1, round(lw / factor)), max(1, round(lh / factor)))
    on_block = None if check_cancel is None else (lambda _done, _total: check_cancel())
    rgb = reader.read_level_scaled(level, size, on_block)
    t1 = time.perf_counter()
    grey = Image.fromarray(rgb).convert("L")  # ITU-R 601 luma, in C
    # No blur: at ~8 µm/px pixel noise is already averaged out, and the small-object/hole
    # cleanup below removes specks; a blur only rounded off boundaries (lower IoU, measured).
    g = np.asarray(grey)
    w0, h0 = reader.dimensions
    ds = (w0 / g.shape[1], h0 / g.shape[0])
    t, dark, bright = otsu(np.asarray(grey.histogram(), np.float64))  # C histogram: 5x bincount
    threshold: float | None = float(t) if bright - dark > MIN_CONTRAST else None
    # Without contrast there is one class: blank glass if bright, all tissue if dark.
    mask = g <= t if threshold is not None else np.full(g.shape, float(g.mean()) < 200.0)
    mx, my = ds[0] * mpp0, ds[1] * mpp0
    mask = clean_mask(mask, _area_px(min_object_um2, mx, my), _area_px(min_hole_um2, mx, my))
    t2 = time.perf_counter()
    return TissueMask(
        mask=mask,
        downsample=ds,
        level=level,
        mpp=mx,
        mpp_assumed=reader.mpp is None,
        threshold=threshold,
        timings={"read_s": t1 - t0, "mask_s": t2 - t1},
        image=rgb,
    )


# ------------------------------------------------------------------------------ tile grid


class TileGrid(BaseModel):
    """tiles.json: the job's tile grid and which tiles hold tissue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = TILES_FORMAT
    tile_size: int
    level: int
    level_downsample: float
    level_dimensions: tuple[int, int]  # (w, h) of `level`
    slide_dimensions: tuple[int, int]  # (w, h) of level 0
    cols: int
    rows: int
    min_tissue_fraction: float
    mask_downsample: tuple[float, float]  # level-0 px per mask px, (x, y)
    mask_shape: tuple[int, int]  # (rows, cols) of tissue_mask.png
    tissue_fraction: list[list[float]]  # [row][col]
    tissue_tiles: list[tuple[int, int]]  # (col, row), row-major order

    def fraction(self, col: int, row: int) -> float:
        return self.tissue_fraction[row][col]

    def is_tissue(self, col: int, row: int) -> bool:
        return self.tissue_fraction[row][col] >= self.min_tissue_fraction

    def tile_rect(self, col: int, row: int) -> tuple[int, int, int, int]:
        """(x, y, w, h) at `level`, clipped to the level."""
        x, y = col * self.tile_size, row * self.tile_size
        lw, lh = self.level_dimensions
        return x, y, min(self.tile_size, lw - x), min(self.tile_size, lh - y)

    def tile_location(self, col: int, row: int) -> tuple[int, int]:
        """Level-0 top-left of a tile, as read_region wants it."""
        x, y, _, _ = self.tile_rect(col, row)
        return round(x * self.level_downsample), round(y * self.level_downsample)

    def mask_box(self, col: int, row: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) of the mask pixels a tile touches (its tiles/ PNG)."""
        x, y, w, h = self.tile_rect(col, row)
        ds, (dx, dy) = self.level_downsample, self.mask_downsample
        return (
            math.floor(y * ds / dy),
            min(self.mask_shape[0], math.ceil((y + h) * ds / dy)),
            math.floor(x * ds / dx),
            min(self.mask_shape[1], math.ceil((x + w) * ds / dx)),
        )


def _edge_integral(s: np.ndarray, edges: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of a summed-area table at fractional edges along one axis."""
    n = s.shape[axis] - 1
    e = np.clip(edges, 0, n)
    i = np.minimum(np.floor(e).astype(np.int64), max(n - 1, 0))
    t = e - i
    a, b = np.take(s, i, axis=axis), np.take(s, np.minimum(i + 1, n), axis=axis)
    shape = [1, 1]
    shape[axis] = len(e)
    return a * (1 - t.reshape(shape)) + b * t.reshape(shape)


def tile_fractions(
    tm: TissueMask,
    slide_dims: tuple[int, int],
    level_dims: tuple[int, int],
    level_ds: float,
    tile_size: int,
) -> np.ndarray:
    """Exact area fraction of tissue under each grid tile, (rows, cols) float64."""
    lw, lh = level_dims
    cols, rows = math.ceil(lw / tile_size), math.ceil(lh / tile_size)
    # Tile edges in level-0 px, clipped to the slide, then in mask px.
    xe = np.minimum(np.arange(cols + 1) * tile_size * level_ds, slide_dims[0]) / tm.downsample[0]
    ye = np.minimum(np.arange(rows + 1) * tile_size * level_ds, slide_dims[1]) / tm.downsample[1]
    # The mask is constant per pixel, so its running sum is piecewise linear between pixel
    # edges: interpolating it at fractional tile edges is exact. Rows first, then columns.
    h, w = tm.mask.shape
    run_x = np.zeros((h, w + 1), np.int32)
    np.cumsum(tm.mask, axis=1, dtype=np.int32, out=run_x[:, 1:])
    per_row = np.diff(_edge_integral(run_x, xe, 1), axis=1)  # (h, cols)
    run_y = np.zeros((h + 1, cols))
    np.cumsum(per_row, axis=0, out=run_y[1:])
    sums = np.diff(_edge_integral(run_y, ye, 0), axis=0)  # (rows, cols)
    area = np.outer(np.diff(ye), np.diff(xe))
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(area > 0, sums / area, 0.0)
    return np.clip(frac, 0.0, 1.0)


def build_tile_grid(tm: TissueMask, reader: SlideReader, params: TissueMaskParams) -> TileGrid:
    if params.level >= reader.level_count:
        raise JobError(
            f"param 'level' is {params.level} but slide {quoted(reader.path)} has levels "
            f"0-{reader.level_count - 1}; use one of those"
        )
    level_dims = reader.level_dimensions[params.level]
    level_ds = reader.level_downsamples[params.level]
    frac = tile_fractions(tm, reader.dimensions, level_dims, level_ds, params.tile_size)
    rows, cols = frac.shape
    tissue = frac >= params.min_tissue_fraction
    return TileGrid(
        tile_size=params.tile_size,
        level=params.level,
        level_downsample=level_ds,
        level_dimensions=level_dims,
        slide_dimensions=reader.dimensions,
        cols=cols,
        rows=rows,
        min_tissue_fraction=params.min_tissue_fraction,
        mask_downsample=tm.downsample,
        mask_shape=(int(tm.mask.shape[0]), int(tm.mask.shape[1])),
        tissue_fraction=np.round(frac, 4).tolist(),
        tissue_tiles=[(int(c), int(r)) for r, c in zip(*np.nonzero(tissue), strict=True)],
    )


def _finished_file(results_dir: Path, name: str) -> Path:
    path = Path(results_dir) / name
    if not path.is_file():
        raise JobError(f"{quoted(path)} does not exist; run the TISSUE_MASK job (again) first")
    return path


def load_tile_grid(results_dir: Path) -> TileGrid:
    """The tiles.json of a finished TISSUE_MASK job (JobError if missing or unreadable)."""
    path = _finished_file(results_dir, TILES_FILE)
    try:
        grid = TileGrid.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0]
        raise JobError(f"{quoted(path)} is unreadable ({first}); rerun the TISSUE_MASK job") from e
    if grid.format != TILES_FORMAT:
        raise JobError(
            f"{quoted(path)} has format {grid.format!r}, expected {TILES_FORMAT!r}; "
            "rerun the TISSUE_MASK job"
        )
    return grid


def load_tissue_mask(results_dir: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """(mask bool array, level-0 px per mask px (x, y)) of a finished TISSUE_MASK job."""
    grid = load_tile_grid(results_dir)
    path = _finished_file(results_dir, MASK_FILE)
    try:
        with Image.open(path) as img:
            mask = np.asarray(img.convert("L")) > 0
    except OSError as e:
        raise JobError(f"{quoted(path)} is unreadable ({e}); rerun the TISSUE_MASK job") from e
    return mask, grid.mask_downsample


# ------------------------------------------------------------------------------- outputs


class SlideMeta(BaseModel):
    path: str
    vendor: str | None
    backend: str
    dimensions: tuple[int, int]
    level_count: int
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    mpp: float | None


class MaskMeta(BaseModel):
    file: str
    shape: tuple[int, int]  # (rows, cols)
    downsample: tuple[float, float]  # level-0 px per mask px, (x, y)
    level_read: int
    mpp: float
    mpp_assumed: bool
    threshold: float | None
    tissue_fraction: float


class GridMeta(BaseModel):
    file: str
    tile_size: int
    level: int
    cols: int
    rows: int
    tiles_total: int
    tissue_tiles: int


class Artifact(BaseModel):
    path: str  # relative to the results dir; a directory ends with '/'
    kind: str
    bytes: int
    sha256: str | None = None  # files only
    count: int | None = None  # directories only: number of files


class TissueManifest(BaseModel):
    format: str = MANIFEST_FORMAT
    job_id: str
    job_type: str = JobType.TISSUE_MASK.value
    created_at: float
    params: dict[str, Any]
    slide: SlideMeta
    mask: MaskMeta
    grid: GridMeta
    artifacts: list[Artifact]
    archive: str  # a zip of every artifact plus this manifest
    timings: dict[str, float]
    versions: dict[str, str]


def library_versions() -> dict[str, str]:
    out = {"wsitui": wsitui.__version__, "python": platform.python_version()}
    for dist in (
        "numpy",
        "scipy",
        "scikit-image",
        "pillow",
        "openslide-python",
        "openslide-bin",
        "tifffile",
        "imagecodecs",
        "pydantic",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["openslide"] = str(openslide.__library_version__)
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def preview_base(reader: SlideReader, image: np.ndarray | None = None) -> np.ndarray:
    """The slide at preview size: its thumbnail, or `image` (the whole slide at any size)
    resized when reading a thumbnail would mean decoding a much bigger level (no coarse level).
    """
    level, (tw, th) = reader.thumbnail_plan(PREVIEW_MAX)
    lw, lh = reader.level_dimensions[level]
    if image is None or lw * lh <= PREVIEW_READ_RATIO * tw * th:
        return reader.thumbnail(PREVIEW_MAX)
    if (image.shape[1], image.shape[0]) == (tw, th):
        return image
    # Area-average when shrinking; when the mask's image is the smaller one (a small slide
    # with no coarse level), smooth rather than blocky enlargement.
    shrink = image.shape[1] >= tw and image.shape[0] >= th
    kind = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize((tw, th), kind))


def render_preview(
    reader: SlideReader, mask: np.ndarray, image: np.ndarray | None = None
) -> np.ndarray:
    """Downscaled slide with the mask in translucent green and its outline in dark green.

    image: the RGB the mask was computed from (TissueMask.image), used instead of reading the
    slide again when that would be expensive (see preview_base).
    """
    img = preview_base(reader, image).astype(np.float32)
    h, w = img.shape[:2]
    m = np.asarray(Image.fromarray(mask).resize((w, h), Image.Resampling.NEAREST))
    img[m] = 0.6 * img[m] + 0.4 * np.array([0.0, 200.0, 0.0], np.float32)
    edge = m & ~ndimage.binary_erosion(m, iterations=1, border_value=1)
    img[edge] = (0, 110, 0)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _clear_outputs(results_dir: Path) -> None:
    """A retried job starts from a clean slate: remove what an earlier attempt wrote."""
    shutil.rmtree(results_dir / TILES_DIR, ignore_errors=True)
    for name in (MASK_FILE, TILES_FILE, PREVIEW_FILE, MANIFEST_FILE, ARCHIVE_FILE):
        (results_dir / name).unlink(missing_ok=True)


def run_tissue_mask(
    slide: Path,
    results_dir: Path,
    params: TissueMaskParams,
    *,
    job_id: str = "",
    report: Callable[[int, int], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> TissueManifest:
    """The whole job, synchronously. SlideError/OSError come out as JobError (one line)."""
    t0 = time.perf_counter()
    try:
        with open_slide(slide) as reader:
            return _run(reader, Path(results_dir), params, job_id, report, check_cancel, t0)
    except SlideError as e:
        raise JobError(str(e)) from e
    except OSError as e:
        raise JobError(
            f"cannot write results to {quoted(results_dir)}: {e.strerror or e}; "
            "check free space and permissions"
        ) from e


def _run(
    reader: SlideReader,
    out: Path,
    params: TissueMaskParams,
    job_id: str,
    report: Callable[[int, int], None] | None,
    check_cancel: Callable[[], None] | None,
    t0: float,
) -> TissueManifest:
    def cancel_point() -> None:
        if check_cancel is not None:
            check_cancel()

    def progress(done: int, total: int) -> None:
        if report is not None:
            report(done, total)

    cancel_point()
    # Cheap grid size first, so progress has a total from the start.
    if params.level < reader.level_count:
        lw, lh = reader.level_dimensions[params.level]
        total = math.ceil(lw / params.tile_size) * math.ceil(lh / params.tile_size)
        progress(0, total)
    tm = compute_tissue_mask(
        reader,
        target_mpp=params.target_mpp,
        min_object_um2=params.min_object_um2,
        min_hole_um2=params.min_hole_um2,
        assumed_mpp=params.assumed_mpp,
        check_cancel=cancel_point,
    )
    cancel_point()
    t_grid = time.perf_counter()
    grid = build_tile_grid(tm, reader, params)
    total = grid.cols * grid.rows
    timings = {**tm.timings, "grid_s": time.perf_counter() - t_grid}

    t_write = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out)
    tiles_dir = out / TILES_DIR
    tiles_dir.mkdir()
    tissue = set(grid.tissue_tiles)
    tile_pngs: dict[str, bytes] = {}  # encoded once: written here, archived below

    def write_tile(col: int, row: int) -> None:
        y0, y1, x0, x1 = grid.mask_box(col, row)
        buf = io.BytesIO()
        Image.fromarray(tm.mask[y0:y1, x0:x1]).save(buf, format="PNG", compress_level=1)
        name = f"tile_{col}_{row}.png"
        (tiles_dir / name).write_bytes(buf.getvalue())
        tile_pngs[name] = buf.getvalue()

    step = max(1, total // 200)  # ~200 progress reports per job at most
    for i in range(total):
        row, col = divmod(i, grid.cols)
        if (col, row) in tissue:
            write_tile(col, row)
        cancel_point()  # every tile boundary
        if (i + 1) % step == 0 or i + 1 == total:
            progress(i + 1, total)
    tile_bytes = sum(len(b) for b in tile_pngs.values())
    Image.fromarray(tm.mask).save(out / MASK_FILE)
    (out / TILES_FILE).write_text(grid.model_dump_json())
    Image.fromarray(render_preview(reader, tm.mask, tm.image)).save(out / PREVIEW_FILE)
    timings["write_s"] = time.perf_counter() - t_write

    artifacts = [
        Artifact(
            path=name, kind=kind, bytes=(out / name).stat().st_size, sha256=_sha256(out / name)
        )
        for name, kind in (
            (MASK_FILE, "tissue_mask"),
            (TILES_FILE, "tile_grid"),
            (PREVIEW_FILE, "preview"),
        )
    ]
    artifacts.append(
        Artifact(path=f"{TILES_DIR}/", kind="tile_masks", bytes=tile_bytes, count=len(tissue))
    )
    timings["total_s"] = time.perf_counter() - t0
    manifest = TissueManifest(
        job_id=job_id,
        created_at=time.time(),
        params=params.as_dict(),
        slide=SlideMeta(
            path=str(reader.path),
            vendor=reader.vendor,
            backend=reader.backend,
            dimensions=reader.dimensions,
            level_count=reader.level_count,
            level_dimensions=list(reader.level_dimensions),
            level_downsamples=list(reader.level_downsamples),
            mpp=reader.mpp,
        ),
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
            tiles_total=total,
            tissue_tiles=len(grid.tissue_tiles),
        ),
        artifacts=artifacts,
        archive=ARCHIVE_FILE,
        timings={k: round(v, 4) for k, v in timings.items()},
        versions=library_versions(),
    )
    (out / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    _write_archive(out, [MASK_FILE, TILES_FILE, PREVIEW_FILE, MANIFEST_FILE], tile_pngs)
    return manifest


def _write_archive(out: Path, names: list[str], tile_pngs: dict[str, bytes]) -> None:
    tmp = out / f".{ARCHIVE_FILE}.partial"
    with zipfile.ZipFile(tmp, "w") as zf:
        for name in names:
            # PNGs are compressed already; deflating them again only costs time.
            kind = zipfile.ZIP_STORED if name.endswith(".png") else zipfile.ZIP_DEFLATED
            zf.write(out / name, name, compress_type=kind)
        for name in sorted(tile_pngs):
            zf.writestr(f"{TILES_DIR}/{name}", tile_pngs[name], compress_type=zipfile.ZIP_STORED)
    tmp.replace(out / ARCHIVE_FILE)


# ------------------------------------------------------------------------------ executor


class TissueMaskExecutor:
    """The Executor for JobType.TISSUE_MASK (see wsitui.core.executor)."""

    job_type = JobType.TISSUE_MASK

    def validate(self, spec: JobSpec, slide: Path) -> None:
        TissueMaskParams.from_params(spec.params)
        # Existence only: the slide is opened when the job runs, not at submission.
        if not slide.exists():
            raise ValueError(f"slide {quoted(spec.slide)} does not exist; check the path")
        if not slide.is_file():
            raise ValueError(f"slide {quoted(spec.slide)} is not a file; give the slide file")

    async def run(self, ctx: JobContext) -> None:
        try:
            params = TissueMaskParams.from_params(ctx.job.params)
        except ValueError as e:
            raise JobError(str(e)) from e
        await anyio.to_thread.run_sync(
            lambda: run_tissue_mask(
                Path(ctx.job.slide).expanduser(),
                ctx.results_dir,
                params,
                job_id=ctx.job.id,
                report=ctx.report,
                check_cancel=ctx.check_cancel,
            )
        )
