"""Synthetic slides shared by the slide and job tests, generated once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from wsitui.slides.reader import OpenSlideReader
from wsitui.slides.sample import MPP, write_sample_slide

SIZE = (4096, 3072)  # 16x12 TIFF tiles, levels 1/4/16: small enough to make in ~1 s
_made: dict[tuple[Any, ...], Path] = {}


def sample_slide_path(factory: pytest.TempPathFactory, size: tuple[int, int], seed: int) -> Path:
    key = (size, seed)
    if key not in _made:
        out = factory.mktemp(f"sample_{size[0]}x{size[1]}_s{seed}") / "sample.svs"
        write_sample_slide(out, size=size, seed=seed)
        _made[key] = out
    return _made[key]


SINGLE_LEVEL_SCALE = 2  # the single-level slide is its source's level 0 upsampled this much


def single_level_tiff_path(factory: pytest.TempPathFactory, source: Path) -> Path:
    """Level 0 of a sample slide, upsampled 2x, as a generic tiled TIFF with no pyramid.

    8192 x 6144 from the 4096 x 3072 sample, at half its MPP: the same tissue in µm, so its
    mask can be compared with the pyramidal one and with the sample's truth.
    """
    key = ("single", source)
    if key not in _made:
        with tifffile.TiffFile(source) as tif:
            pixels = tif.pages[0].asarray()
        k = SINGLE_LEVEL_SCALE
        pixels = np.repeat(np.repeat(pixels, k, axis=0), k, axis=1)
        mpp = MPP / k
        out = factory.mktemp("single_level") / "single.tif"
        tifffile.imwrite(
            out,
            pixels,
            tile=(256, 256),
            photometric="rgb",
            compression="jpeg",
            compressionargs={"level": 90},
            metadata=None,
            resolution=(1e4 / mpp, 1e4 / mpp),  # px per cm: OpenSlide reports the MPP
            resolutionunit="CENTIMETER",
        )
        _made[key] = out
    return _made[key]


def zero_tile_bytecounts(path: Path, page: int, tiles: list[int]) -> None:
    """Mark tiles of a TIFF page as missing (byte count 0), as scanners do for empty areas."""
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tag = tif.pages[page].tags["TileByteCounts"]
        counts = list(tag.value)
        for t in tiles:
            counts[t] = 0
        tag.overwrite(counts)


def record_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(w, h) of every region an OpenSlide-backed reader asks its backends for, from now on."""
    sizes: list[tuple[int, int]] = []

    def wrap(real: Callable[..., Any], size_of: Callable[..., tuple[int, int]]) -> Any:
        def recorded(*a: Any) -> Any:
            sizes.append(size_of(*a))
            return real(*a)

        return recorded

    monkeypatch.setattr(
        OpenSlideReader,
        "_read_tiles",
        wrap(OpenSlideReader._read_tiles, lambda _s, _l, _i, _x, _y, w, h: (w, h)),
    )
    monkeypatch.setattr(
        openslide.OpenSlide,
        "read_region",
        wrap(openslide.OpenSlide.read_region, lambda _s, _loc, _lv, size: tuple(size)),
    )
    return sizes


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two masks; pred is nearest-resized onto truth's grid."""
    if pred.shape != truth.shape:
        size = (truth.shape[1], truth.shape[0])
        pred = np.asarray(Image.fromarray(pred).resize(size, Image.Resampling.NEAREST))
    return float((pred & truth).sum() / max(1, (pred | truth).sum()))


def with_stated_mpp(factory: pytest.TempPathFactory, source: Path, mpp: str) -> Path:
    """A copy of a sample SVS whose Aperio description states `mpp` (e.g. '1e-09')."""
    key = ("mpp", source, mpp)
    if key not in _made:
        out = factory.mktemp("mpp") / f"mpp_{mpp}.svs"
        out.write_bytes(source.read_bytes())
        with tifffile.TiffFile(out, mode="r+b") as tif:
            tag = tif.pages[0].tags["ImageDescription"]
            tag.overwrite(tag.value.replace(f"MPP = {MPP:.4f}", f"MPP = {mpp}"))
        _made[key] = out
    return _made[key]
