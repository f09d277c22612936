"""Slides written the way OTHER generators write them (scanners, converters), not the way
`wsitui/slides/synthetic/writer.py` does: shared JPEGTables with abbreviated tile streams,
YCbCr 2x2 JPEG, Aperio's RGB JPEG, tile 240, odd level sizes, LZW / Deflate / raw / JPEG 2000
tiles, generic pyramidal TIFFs with the pixel size only in the resolution tags, SubIFD
pyramids, BigTIFF, RGBA / palette / greyscale pages.

The pixels are those of one of our sample slides (tissue the jobs can find), re-encoded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.slides.samples import sample_slide_path

APERIO_HEAD = "Aperio Image Library v12.0.15 \r\n"
ODD = (1999, 1501)  # level sizes not divisible by the tile; downsamples 4.0043 and 16.13
_tissue: list[np.ndarray] = []


def tissue_pixels(factory: pytest.TempPathFactory) -> np.ndarray:
    """Level 0 of a 2048x1536 sample (0.499 µm/px), cut to ODD: what the variants hold."""
    if not _tissue:
        with tifffile.TiffFile(sample_slide_path(factory, (2048, 1536), 3)) as tif:
            _tissue.append(tif.pages[0].asarray()[: ODD[1], : ODD[0]].copy())
    return _tissue[0]


@dataclass(frozen=True)
class Foreign:
    """How to write one slide."""

    # jpeg-tables | jpeg | lzw | deflate | none | jpeg2000, or any tifffile name or TIFF code
    # (33005: Aperio's RGB JPEG 2000, "zstd", "packbits", ...)
    compression: str | int = "jpeg-tables"
    photometric: str = "ycbcr"  # ycbcr | rgb (for JPEG); rgb | rgba | palette | grey otherwise
    tile: int = 256
    downsamples: tuple[int, ...] = (1, 4, 16)
    aperio: str | None = "MPP = 0.2527|AppMag = 40"  # the description's tail; None: generic
    thumbnail: bool = True  # an Aperio stripped thumbnail page after level 0
    associated: bool = True  # Aperio label and macro strip pages at the end
    tiled_label: bool = False  # the label written tiled instead (OpenSlide: a level)
    label_size: tuple[int, int] = (280, 300)  # (w, h)
    resolution: tuple[float, str] | None = None  # (µm/px, 'cm' | 'inch') in the resolution tags
    bigtiff: bool = False
    subifds: bool = False  # levels 1.. as SubIFDs of page 0 (OME style) instead of pages
    reduced_flag: bool = True  # levels 1.. flagged reduced (NewSubfileType 1); False: unflagged
    ome_mpp: float | None = None  # an OME-TIFF whose XML says this PhysicalSizeX/Y (µm)
    predictor: bool = False  # horizontal differencing for LZW / Deflate
    decimate: bool = False  # levels as img[::ds, ::ds]: ceil sizes, as naive writers make them
    extra: dict[str, Any] = field(default_factory=dict)


def _segments(jpeg: bytes) -> list[tuple[int, bytes]]:
    """(marker, whole segment bytes) up to and including SOS + entropy data + EOI."""
    out: list[tuple[int, bytes]] = []
    i = 2  # past SOI
    while i < len(jpeg):
        assert jpeg[i] == 0xFF, i
        marker = jpeg[i + 1]
        if marker == 0xDA:  # SOS: the rest is scan data and EOI
            out.append((marker, jpeg[i:]))
            break
        length = int.from_bytes(jpeg[i + 2 : i + 4], "big")
        out.append((marker, jpeg[i : i + 2 + length]))
        i += 2 + length
    return out


def _jpeg(tile: np.ndarray, *, ycbcr: bool, quality: int = 85) -> bytes:
    if ycbcr:  # libjpeg's default: YCbCr, 4:2:0 (2x2) chroma
        buf = io.BytesIO()
        Image.fromarray(tile).save(buf, "JPEG", quality=quality, subsampling=2, optimize=False)
        return buf.getvalue()
    # Aperio's "RGB" JPEG: no colour transform, no subsampling.
    return bytes(imagecodecs.jpeg8_encode(tile, level=quality, outcolorspace="rgb"))


def abbreviated(tiles: list[np.ndarray], *, ycbcr: bool) -> tuple[bytes, list[bytes]]:
    """(JPEGTables, tile streams without tables or APP markers), as libtiff writes them."""
    tables: bytes | None = None
    streams = []
    for tile in tiles:
        segs = _segments(_jpeg(tile, ycbcr=ycbcr))
        t = b"".join(s for m, s in segs if m in (0xDB, 0xC4))
        if tables is None:
            tables = t
        assert t == tables, "tables differ between tiles"
        body = b"".join(s for m, s in segs if m not in (0xDB, 0xC4) and not 0xE0 <= m <= 0xEF)
        streams.append(b"\xff\xd8" + body)
    assert tables is not None
    return b"\xff\xd8" + tables + b"\xff\xd9", streams


def _tiles(img: np.ndarray, tile: int) -> list[np.ndarray]:
    h, w = img.shape[:2]
    out = []
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            t = np.zeros((tile, tile, img.shape[2]), np.uint8)
            part = img[y : y + tile, x : x + tile]
            t[: part.shape[0], : part.shape[1]] = part
            t[part.shape[0] :, :] = 255
            t[:, part.shape[1] :] = 255
            out.append(t)
    return out


def pyramid(img: np.ndarray, downsamples: tuple[int, ...]) -> list[np.ndarray]:
    """Levels by area mean; sizes are floor(level 0 / downsample), as Aperio's are."""
    levels = []
    for ds in downsamples:
        if ds == 1:
            levels.append(img)
            continue
        h, w = img.shape[0] // ds, img.shape[1] // ds
        levels.append(np.asarray(Image.fromarray(img[: h * ds, : w * ds]).reduce(ds)))
    return levels


def write_foreign(path: Path, img: np.ndarray, spec: Foreign) -> Path:
    """Write `img` (h, w, 3) uint8 as `spec` says; return path."""
    h0, w0 = img.shape[:2]
    if spec.decimate:
        levels = [np.ascontiguousarray(img[::ds, ::ds]) for ds in spec.downsamples]
    else:
        levels = pyramid(img, spec.downsamples)
    desc0 = desc = None
    if spec.aperio is not None:
        desc0 = (
            f"{APERIO_HEAD}{w0}x{h0} [0,0 {w0}x{h0}] ({spec.tile}x{spec.tile}) "
            f"JPEG/RGB Q=70|{spec.aperio}"
        )
    resolution: dict[str, Any] = {}
    if spec.resolution is not None:
        mpp, unit = spec.resolution
        per = 1e4 if unit == "cm" else 25400.0
        resolution = {
            "resolution": (per / mpp, per / mpp),
            "resolutionunit": "CENTIMETER" if unit == "cm" else "INCH",
        }
    with tifffile.TiffWriter(path, bigtiff=spec.bigtiff, ome=spec.ome_mpp is not None) as tif:
        for i, level in enumerate(levels):
            if spec.aperio is not None:
                lh, lw = level.shape[:2]
                desc = desc0 if i == 0 else f"{APERIO_HEAD}{w0}x{h0} -> {lw}x{lh} - "
            kw: dict[str, Any] = {
                "tile": (spec.tile, spec.tile),
                "description": desc,
                "metadata": None,
                **resolution,
                **spec.extra,
            }
            if spec.subifds and i == 0 and len(levels) > 1:
                kw["subifds"] = len(levels) - 1
            if i == 0 and spec.ome_mpp is not None:
                kw["metadata"] = {"axes": "YXS"} | {f"PhysicalSize{a}": spec.ome_mpp for a in "XY"}
            if i > 0 and (spec.subifds or spec.aperio is None) and spec.reduced_flag:
                kw["subfiletype"] = 1  # a reduced-resolution image
            _write_level(tif, level, spec, kw)
            if i == 0 and spec.aperio is not None and spec.thumbnail and not spec.subifds:
                th = Image.fromarray(img)
                th.thumbnail((256, 256), Image.Resampling.BOX)
                tif.write(
                    np.asarray(th),
                    description=f"{APERIO_HEAD}{w0}x{h0} -> {th.width}x{th.height} - ",
                    photometric="rgb",
                    compression="jpeg",
                    rowsperstrip=16,
                    metadata=None,
                )
        if spec.aperio is not None and spec.associated:
            lw, lh = spec.label_size
            label = np.full((lh, lw, 3), 230, np.uint8)
            label[lh // 3 : 2 * lh // 3, lw // 7 : 6 * lw // 7] = 20
            layout = {"tile": (64, 64)} if spec.tiled_label else {"rowsperstrip": 16}
            tif.write(
                label,
                description=f"{APERIO_HEAD}label {label.shape[1]}x{label.shape[0]}",
                subfiletype=1,
                photometric="rgb",
                compression="lzw",
                metadata=None,
                **layout,
            )
            macro = np.full((250, 700, 3), 200, np.uint8)
            tif.write(
                macro,
                description=f"{APERIO_HEAD}macro {macro.shape[1]}x{macro.shape[0]}",
                subfiletype=9,
                photometric="rgb",
                compression="jpeg",
                rowsperstrip=16,
                metadata=None,
            )
    return path


def _write_level(tif: tifffile.TiffWriter, level: np.ndarray, spec: Foreign, kw: dict) -> None:
    h, w = level.shape[:2]
    if spec.compression == "jpeg-tables":
        ycbcr = spec.photometric == "ycbcr"
        tables, streams = abbreviated(_tiles(level, spec.tile), ycbcr=ycbcr)
        tif.write(
            iter(streams),
            shape=(h, w, 3),
            dtype=np.uint8,
            photometric="rgb",  # the pixels given; the tag says what the streams hold:
            compressionargs={"outcolorspace": "ycbcr" if ycbcr else "rgb"},
            subsampling=(2, 2) if ycbcr else (1, 1),
            compression=7,
            jpegtables=tables,
            **kw,
        )
        return
    if spec.compression == "jpeg":
        ycbcr = spec.photometric == "ycbcr"
        tif.write(
            level,
            photometric="rgb",
            subsampling=(2, 2) if ycbcr else (1, 1),
            compression="jpeg",
            compressionargs={"level": 85, "outcolorspace": "ycbcr" if ycbcr else "rgb"},
            **kw,
        )
        return
    data, extra = _convert(level, spec.photometric)
    comp = {"none": None, "lzw": "lzw", "deflate": "zlib", "jpeg2000": "jpeg2000"}.get(
        spec.compression, spec.compression
    )
    tif.write(
        data,
        compression=comp,
        predictor=spec.predictor or None,
        **extra,
        **kw,
    )


def _convert(level: np.ndarray, photometric: str) -> tuple[np.ndarray, dict[str, Any]]:
    if photometric == "rgb":
        return level, {"photometric": "rgb"}
    if photometric == "rgba":
        alpha = np.full((*level.shape[:2], 1), 255, np.uint8)
        alpha[:32, :32] = 0  # a transparent corner: composited onto white
        return np.concatenate([level, alpha], axis=2), {
            "photometric": "rgb",
            "extrasamples": ["unassalpha"],
        }
    if photometric == "grey":
        return np.asarray(Image.fromarray(level).convert("L")), {"photometric": "minisblack"}
    if photometric == "palette":
        pal = Image.fromarray(level).quantize(64, method=Image.Quantize.MEDIANCUT)
        lut = np.asarray(
            pal.getpalette()[: 3 * 256] + [0] * (768 - len(pal.getpalette())), np.uint16
        )
        colormap = (lut.reshape(256, 3).T * 257).astype(np.uint16)
        return np.asarray(pal), {"photometric": "palette", "colormap": colormap}
    raise ValueError(photometric)
