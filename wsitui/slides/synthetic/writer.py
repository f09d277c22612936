"""Writing a synthetic slide: an Aperio SVS and its ground truth beside it.

Writing never harms what the project did not make: see `write_sample_slide`.

The writer streams: level-0 tiles are rendered row by row and handed to tifffile; level 1 (4x)
is built during that pass, lower levels from level 1, and the tissue field is built in strips.
Peak memory is about level 1 (width*height*3/16 bytes) plus a row of tiles: ~0.4 GB for
40k x 30k. The default size (`DEFAULT_SIZE`, 8192 x 6144) takes ~4 s on two cores.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import tifffile
from PIL import Image, ImageDraw

from wsitui.slides.errors import SlideError, quoted
from wsitui.slides.safe_write import AtomicFile, check_target
from wsitui.slides.style import DEFAULT_STYLE, SampleStyle
from wsitui.slides.synthetic.generator import MPP, TILE, SamplePlan, _hash_u01
from wsitui.slides.synthetic.truth import GENERATOR, TRUTH_VERSION, is_sample_truth, truth_path_for

APP_MAG = 20
JPEG_QUALITY = 80
LEVEL_FACTOR = 4
THUMBNAIL_MAX = 1024
DEFAULT_SIZE = (8192, 6144)
LEVEL1_IN_MEMORY_BYTES = 256 * 2**20  # a bigger level 1 lives in an unnamed file instead
# A sample is an Aperio SVS, itself a TIFF: under any other suffix (x.png, x.txt, none) other
# tools misread it and the TUI's file browser does not list it.
SAMPLE_SUFFIXES = (".svs", ".tif", ".tiff")

_DESC_HEAD = "Aperio Image Library v12.0.15\r\n"
# Page 0's description of every slide this module writes contains this: how an existing file
# is recognised as a generated sample (which may be replaced without --force).
SAMPLE_MARKER = "|ScanScope ID = WSITUI|"


def level_dimensions(width: int, height: int) -> list[tuple[int, int]]:
    """Pyramid of a sample slide: 4x steps while the new level's long side is >= 256 px."""
    dims = [(width, height)]
    while True:
        w, h = dims[-1]
        nw, nh = w // LEVEL_FACTOR, h // LEVEL_FACTOR
        if max(nw, nh) < TILE or min(nw, nh) < 1:
            return dims
        dims.append((nw, nh))


def is_sample_slide(path: Path) -> bool:
    """Whether `path` is a slide this module wrote (page 0 carries SAMPLE_MARKER)."""
    try:
        with tifffile.TiffFile(path) as tif:
            desc = tif.pages.first.description
    except Exception:  # not a TIFF, unreadable, truncated: not ours
        return False
    return desc.startswith(_DESC_HEAD) and SAMPLE_MARKER in desc


# ------------------------------------------------------------------------------- the writer


@dataclass(frozen=True, slots=True)
class SampleInfo:
    path: Path
    truth_path: Path
    width: int
    height: int
    seed: int
    level_dimensions: tuple[tuple[int, int], ...]
    nuclei: int
    tissue_fraction: float
    file_bytes: int
    seconds: float


def _reduce4(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """4x4 box average (rounded) of the top-left (4*out_h, 4*out_w) of img.

    PIL's reduce is ~20x faster than numpy; strips keep its copy of the input small.
    """
    strips = []
    for r in range(0, out_h, 128):
        rows = min(128, out_h - r)
        strip = np.ascontiguousarray(img[r * 4 : (r + rows) * 4, : out_w * 4])
        strips.append(np.asarray(Image.fromarray(strip).reduce(LEVEL_FACTOR)))
    return np.concatenate(strips) if len(strips) > 1 else strips[0]


def _desc_level(w0: int, h0: int, w: int, h: int, q: int = JPEG_QUALITY) -> str:
    base = f"{w0}x{h0} [0,0 {w0}x{h0}] ({TILE}x{TILE})"
    if (w, h) == (w0, h0):
        return f"{_DESC_HEAD}{base} JPEG/RGB Q={q}"
    return f"{_DESC_HEAD}{base} -> {w}x{h} JPEG/RGB Q={q}"


def _label_image(seed: int, size: tuple[int, int]) -> np.ndarray:
    img = Image.new("RGB", (400, 400), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(["wsitui sample", f"seed {seed}", f"{size[0]}x{size[1]}"]):
        draw.text((24, 24 + 28 * i), line, fill=(20, 20, 20))
    bits = _hash_u01(seed, np.arange(48), np.zeros(48), np.full(48, 99)) < 0.5
    for i, bit in enumerate(bits):  # a fake barcode that differs per seed
        draw.rectangle([24 + 7 * i, 200, 24 + 7 * i + (4 if bit else 2), 360], fill=(0, 0, 0))
    return np.asarray(img)


def _macro_image(label: np.ndarray, overview: np.ndarray) -> np.ndarray:
    h = 400
    macro = Image.new("RGB", (1200, h), (225, 228, 232))  # glass seen by the macro camera
    macro.paste(Image.fromarray(label), (0, 0))
    ov = Image.fromarray(overview)
    ov.thumbnail((760, h - 40), Image.Resampling.BOX)
    macro.paste(ov, (420 + (760 - ov.width) // 2, (h - ov.height) // 2))
    return np.asarray(macro)


def _write_svs(
    dest: IO[bytes],
    plan: SamplePlan,
    scratch: IO[bytes],
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    """Write the SVS at dest; return the truth nuclei (N, 5) in key order."""
    width, height, seed = plan.width, plan.height, plan.seed
    dims = level_dimensions(width, height)
    ntx, nty = math.ceil(width / TILE), math.ceil(height / TILE)
    w1, h1 = dims[1]
    # Level 1 lives in a file-backed array when big, so RSS stays flat on huge slides.
    if w1 * h1 * 3 > LEVEL1_IN_MEMORY_BYTES:
        level1: np.ndarray = np.memmap(scratch, dtype=np.uint8, mode="w+", shape=(h1, w1, 3))
    else:
        level1 = np.empty((h1, w1, 3), np.uint8)
    truth_nuclei: list[np.ndarray] = []
    c = TILE // plan.cell  # cells per tile side
    q = TILE // LEVEL_FACTOR  # a level-0 tile's side at level 1

    # How far a nucleus reaches into a tile's pixels: its radius plus the blur margin.
    reach = plan.nucleus_reach

    def row_tiles(pool: ThreadPoolExecutor) -> Iterator[np.ndarray]:
        for ty in range(nty):
            # Nuclei of the row's cells plus one cell row either side (they reach in).
            p, shade, crow = plan.nuclei_in_cells(0, plan.cells_x, c * ty - 1, c * ty + c + 1)
            truth_nuclei.append(p[(crow >= c * ty) & (crow < c * ty + c)])

            def render(tx: int, ty: int = ty, p: np.ndarray = p, sh: np.ndarray = shade) -> Any:
                near = np.abs(p[:, 0] - (tx * TILE + TILE / 2)) < TILE / 2 + reach
                return plan.render_tile(tx, ty, (p[near], sh[near]))

            tiles = list(pool.map(render, range(ntx)))  # one row: ~31 MB on 40k px
            for tx, tile in enumerate(tiles):
                r0, c0 = ty * q, tx * q
                rh, cw = min(q, h1 - r0), min(q, w1 - c0)
                if rh > 0 and cw > 0:
                    level1[r0 : r0 + rh, c0 : c0 + cw] = _reduce4(tile, q, q)[:rh, :cw]
            # Report before yielding: tifffile stops pulling right after the last tile.
            if progress is not None:
                progress((ty + 1) * ntx, ntx * nty)
            yield from tiles

    quality = plan.style.jpeg_quality
    desc0 = (
        f"{_desc_level(width, height, width, height, quality)}"
        f"|AppMag = {APP_MAG * plan.zoom}|StripeWidth = 2040"
        f"{SAMPLE_MARKER}Filename = wsitui-sample-{seed}|Date = 01/01/25"
        f"|Time = 00:00:00|User = wsitui|MPP = {plan.mpp:.4f}|Left = 0|Top = 0"
        f"|Title = wsitui synthetic sample (seed {seed})"
    )
    if not plan.style.is_default:
        desc0 += f"|Style = {plan.style.name}"
    common: dict[str, Any] = {
        "photometric": "rgb",
        "metadata": None,  # else tifffile puts its own JSON in ImageDescription
        "compression": "jpeg",
        "compressionargs": {"level": quality},
    }
    # tifffile buffers up to 512 MB of raw tiles per batch by default: keep it to 16 MB.
    batch = {"maxworkers": workers, "buffersize": 16 * 2**20}
    with (
        tifffile.TiffWriter(dest, bigtiff=width * height * 3 > 2**31) as tif,
        ThreadPoolExecutor(workers) as pool,
    ):
        tif.write(
            row_tiles(pool),
            shape=(height, width, 3),
            dtype=np.uint8,
            tile=(TILE, TILE),
            description=desc0,
            **batch,
            **common,
        )
        levels = [level1]
        for w, h in dims[2:]:
            levels.append(_reduce4(levels[-1], h, w))
        # Thumbnail from the smallest level that is still at least its size.
        src = next(a for a in reversed(levels) if max(a.shape[:2]) >= THUMBNAIL_MAX or a is level1)
        thumb = Image.fromarray(np.asarray(src))
        thumb.thumbnail((THUMBNAIL_MAX, THUMBNAIL_MAX), Image.Resampling.BOX)
        thumb_arr = np.asarray(thumb)
        tif.write(
            thumb_arr,
            description=f"{_DESC_HEAD}{width}x{height} -> {thumb.width}x{thumb.height} - ",
            rowsperstrip=16,
            **common,
        )
        for (w, h), arr in zip(dims[1:], levels, strict=True):
            tif.write(
                arr,
                tile=(TILE, TILE),
                description=_desc_level(width, height, w, h, quality),
                **batch,
                **common,
            )
        label = _label_image(seed, (width, height))
        tif.write(
            label,
            description=f"{_DESC_HEAD}label {label.shape[1]}x{label.shape[0]}",
            subfiletype=1,
            photometric="rgb",
            metadata=None,
            compression="lzw",
            rowsperstrip=16,
        )
        macro = _macro_image(label, thumb_arr)
        tif.write(
            macro,
            description=f"{_DESC_HEAD}macro {macro.shape[1]}x{macro.shape[0]}",
            subfiletype=9,
            rowsperstrip=16,
            **common,
        )
    return np.concatenate(truth_nuclei) if truth_nuclei else np.zeros((0, 5))


def _check_sample_name(out: Path) -> None:
    # A directory is said as one by `check_target` ("give a file name"): that is the mistake.
    if out.suffix.lower() not in SAMPLE_SUFFIXES and not out.is_dir():
        raise SlideError(
            f"cannot write {quoted(out)}: a sample slide is an Aperio SVS (a TIFF); "
            "give it a .svs, .tif or .tiff name"
        )


def check_sample_target(out: Path, *, force: bool = False) -> None:
    """SlideError (one line) unless writing a sample at `out` (and its truth) harms nothing:
    what `write_sample_slide` checks first, for a caller that wants to know before it says
    "generating"."""
    _check_sample_name(out)
    check_target(out, is_sample_slide, force, "slide")
    check_target(truth_path_for(out), lambda p: is_sample_truth(p, out), force, "ground truth")


def write_sample_slide(
    out: Path,
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    force: bool = False,
    style: SampleStyle | None = None,
    mpp: float = MPP,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SampleInfo:
    """Write a synthetic Aperio SVS at `out` and its ground truth at `truth_path_for(out)`.

    OpenSlide opens it as vendor 'aperio' (levels 4x apart, thumbnail, label, macro, MPP 0.499,
    AppMag 20; with `mpp` 0.2495, 40x: nuclei drawn at that pixel size, AppMag 40).
    Same (size, seed, style, mpp) -> identical files. `progress(tiles_done, tiles_total)`
    is called per row of level-0 tiles.

    Nothing the project did not make is harmed: an existing slide is replaced only when it is
    a generated sample (its description carries SAMPLE_MARKER), an existing truth file only
    when it is a sidecar written here for this slide (`is_sample_truth`); anything else needs
    `force=True`. A directory, symbolic link, FIFO, socket or device is never written, even
    with force. Both files appear atomically (written unnamed, then renamed), and a killed
    process leaves no scratch directory or file. Raises SlideError (output location, refusal)
    or ValueError (bad size, seed or style).
    """
    t_start = time.perf_counter()
    out = Path(out)
    plan = SamplePlan(size[0], size[1], seed, style or DEFAULT_STYLE, mpp)
    _check_sample_name(out)  # before the directory: a wrong name is the first thing to fix
    if not out.parent.is_dir():
        for part in (*reversed(out.parents), out.parent):
            if (part.exists() or part.is_symlink()) and not part.is_dir():
                raise SlideError(
                    f"cannot write {quoted(out)}: {quoted(part)} is a file, not a directory; "
                    "give a path in a directory"
                )
        raise SlideError(
            f"cannot write {quoted(out)}: directory {quoted(out.parent)} does not exist; "
            "create it or give a path in a directory that exists"
        )
    truth = truth_path_for(out)
    check_sample_target(out, force=force)
    try:
        with AtomicFile(out) as slide_file, AtomicFile(truth) as truth_file:
            # Level 1 of a big slide lives in an unnamed file (gone when closed or killed).
            with tempfile.TemporaryFile(dir=out.parent) as scratch:
                nuclei = _write_svs(
                    slide_file.file,
                    plan,
                    scratch,
                    workers or min(4, os.cpu_count() or 1),
                    progress,
                )
            np.savez_compressed(
                truth_file.file,
                version=TRUTH_VERSION,
                generator=GENERATOR,
                slide=out.name,
                style=plan.style.to_json(),
                width=plan.width,
                height=plan.height,
                seed=seed,
                mpp=plan.mpp,
                tissue=plan.truth_tissue,
                tissue_downsample=float(plan.field_ds),
                nuclei=nuclei,
            )
            check_sample_target(out, force=force)  # again: something may have appeared meanwhile
            truth_file.commit()
            slide_file.commit()
    except OSError as e:
        raise SlideError(
            f"cannot write {quoted(out)}: {e.strerror or e}; give a path in a directory you can "
            "write to, with room for the slide"
        ) from e
    return SampleInfo(
        path=out,
        truth_path=truth,
        width=plan.width,
        height=plan.height,
        seed=seed,
        level_dimensions=tuple(level_dimensions(plan.width, plan.height)),
        nuclei=len(nuclei),
        tissue_fraction=float(plan.truth_tissue.mean()),
        file_bytes=out.stat().st_size,
        seconds=time.perf_counter() - t_start,
    )
