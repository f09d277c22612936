"""Slides from other generators (tests/slides/foreign.py): they open, the tifffile fast path
gives OpenSlide's pixels (or the level stays with OpenSlide), and the pixel size is right."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.slides.foreign import ODD, Foreign, tissue_pixels, write_foreign
from wsitui.slides.errors import SlideError
from wsitui.slides.reader import OpenSlideReader, open_slide


@dataclass(frozen=True)
class Want:
    vendor: str
    mpp: float | None
    levels: int
    fast: tuple[int, ...]  # levels the fast path must keep
    lossless: bool = False


MPP = 0.2527
VARIANTS: dict[str, tuple[Foreign, Want]] = {
    # Aperio as scanners write it: JPEGTables + abbreviated streams, YCbCr 2x2.
    "svs-ycbcr-tables-256": (Foreign(), Want("aperio", MPP, 3, (0, 1, 2))),
    # Aperio's "RGB" JPEG (no colour transform), tile 240, MPP first and spaced otherwise.
    "svs-rgb-tables-240": (
        Foreign(photometric="rgb", tile=240, aperio="AppMag = 40 |MPP=0.2527|  Left = 1"),
        Want("aperio", MPP, 3, (0, 1, 2)),
    ),
    "svs-rgb-jpeg-ds2": (
        Foreign(
            compression="jpeg", photometric="rgb", downsamples=(1, 2, 8), aperio="MPP  =  0.2527"
        ),
        Want("aperio", MPP, 3, (0, 1, 2)),
    ),
    "svs-lzw-predictor": (
        Foreign(compression="lzw", photometric="rgb", predictor=True),
        Want("aperio", MPP, 3, (0, 1, 2), lossless=True),
    ),
    "svs-deflate-240": (
        Foreign(compression="deflate", photometric="rgb", tile=240),
        Want("aperio", MPP, 3, (0, 1, 2), lossless=True),
    ),
    "svs-raw": (
        Foreign(compression="none", photometric="rgb"),
        Want("aperio", MPP, 3, (0, 1, 2), lossless=True),
    ),
    # Aperio's own JPEG 2000 (33005, RGB): OpenSlide decodes it; tifffile does not try.
    "svs-jp2k-rgb": (
        Foreign(compression=33005, photometric="rgb"),
        Want("aperio", MPP, 3, (), lossless=True),
    ),
    "svs-bigtiff": (Foreign(bigtiff=True), Want("aperio", MPP, 3, (0, 1, 2))),
    # Levels decimated with ceil sizes (1999 -> 500 -> 125): downsamples 3.995 and 15.99.
    "svs-decimated-ceil-240": (
        Foreign(tile=240, decimate=True, photometric="rgb"),
        Want("aperio", MPP, 3, (0, 1, 2)),
    ),
    "svs-single-level": (Foreign(downsamples=(1,)), Want("aperio", MPP, 1, (0,))),
    "svs-no-thumbnail-no-associated": (
        Foreign(thumbnail=False, associated=False, aperio="AppMag = 20|MPP = 0.4990"),
        Want("aperio", 0.499, 3, (0, 1, 2)),
    ),
    # Generic pyramidal TIFFs: the pixel size only in the resolution tags, or nowhere.
    "tif-jpeg-cm": (
        Foreign(aperio=None, compression="jpeg", photometric="rgb", resolution=(0.25, "cm")),
        Want("generic-tiff", 0.25, 3, (0, 1, 2)),
    ),
    "tif-tables-ycbcr-inch": (
        Foreign(aperio=None, tile=240, resolution=(0.5, "inch")),
        Want("generic-tiff", 0.5, 3, (0, 1, 2)),
    ),
    "tif-lzw-no-mpp": (
        Foreign(aperio=None, compression="lzw", photometric="rgb"),
        Want("generic-tiff", None, 3, (0, 1, 2), lossless=True),
    ),
    "tif-packbits": (
        Foreign(aperio=None, compression="packbits", photometric="rgb"),
        Want("generic-tiff", None, 3, (0, 1, 2), lossless=True),
    ),
    "tif-zstd": (
        Foreign(aperio=None, compression="zstd", photometric="rgb"),
        Want("generic-tiff", None, 3, (), lossless=True),
    ),
    # Levels as SubIFDs of page 0 (OME style), or unflagged: test_reader_pyramid.py.
    "tif-bigtiff": (
        Foreign(aperio=None, bigtiff=True, compression="deflate", photometric="rgb"),
        Want("generic-tiff", None, 3, (0, 1, 2), lossless=True),
    ),
    # Not 3 x 8-bit: OpenSlide reads them, tifffile does not try.
    "tif-rgba": (
        Foreign(aperio=None, compression="lzw", photometric="rgba"),
        Want("generic-tiff", None, 3, ()),
    ),
    "tif-palette": (
        Foreign(aperio=None, compression="lzw", photometric="palette"),
        Want("generic-tiff", None, 3, ()),
    ),
    "tif-grey": (
        Foreign(aperio=None, compression="deflate", photometric="grey"),
        Want("generic-tiff", None, 3, ()),
    ),
}


@pytest.fixture(scope="session")
def tissue(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return tissue_pixels(tmp_path_factory)


_written: dict[str, Path] = {}


def foreign_slide(factory: pytest.TempPathFactory, tissue: np.ndarray, name: str) -> Path:
    if name not in _written:
        spec = VARIANTS[name][0]
        suffix = ".svs" if spec.aperio is not None else ".tif"
        _written[name] = write_foreign(factory.mktemp(name) / f"slide{suffix}", tissue, spec)
    return _written[name]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_foreign_slide_reads_like_openslide(
    tmp_path_factory: pytest.TempPathFactory, tissue: np.ndarray, name: str
):
    want = VARIANTS[name][1]
    path = foreign_slide(tmp_path_factory, tissue, name)
    with open_slide(path) as fast, open_slide(path, fast_path=False) as slow:
        assert isinstance(fast, OpenSlideReader)
        assert fast.vendor == want.vendor
        assert fast.level_count == want.levels
        assert fast.dimensions == ODD
        assert fast.fast_levels == want.fast
        if want.mpp is None:
            assert fast.mpp is None
        else:
            assert fast.mpp == pytest.approx(want.mpp, rel=1e-3)
        # Every level whole, from its origin (always addressed exactly): the same pixels.
        for level, (w, h) in enumerate(fast.level_dimensions):
            np.testing.assert_array_equal(
                fast.read_region((0, 0), level, (w, h)), slow.read_region((0, 0), level, (w, h))
            )
            # read_level_scaled reads fast levels in level px: the same as from the origin.
            np.testing.assert_array_equal(
                fast.read_level(level), slow.read_region((0, 0), level, (w, h))
            )
        rng = np.random.default_rng(5)
        for _ in range(25):
            level = int(rng.integers(0, fast.level_count))
            ds = fast.level_downsamples[level]
            lw, lh = fast.level_dimensions[level]
            x = round(int(rng.integers(-30, lw)) * ds)
            y = round(int(rng.integers(-30, lh)) * ds)
            w, h = (int(v) for v in rng.integers(1, 300, 2))
            np.testing.assert_array_equal(
                fast.read_region((x, y), level, (w, h)), slow.read_region((x, y), level, (w, h))
            )
        # And they are the tissue written (JPEG: close; lossless: equal where opaque).
        got = fast.read_region((0, 0), 0, ODD).astype(np.int16)
        ref = tissue.astype(np.int16)
        if VARIANTS[name][0].photometric == "grey":
            ref = np.asarray(tifffile.imread(path, key=0), np.int16)[..., None]
        elif VARIANTS[name][0].photometric == "palette":
            return  # quantised to 64 colours: the equality with OpenSlide is the check
        diff = np.abs(got - ref)
        if VARIANTS[name][0].photometric == "rgba":
            diff = diff[32:, 32:]  # the transparent corner is white
            assert (got[:32, :32] == 255).all()
        if want.lossless:
            assert diff.max() == 0
        else:
            assert diff.mean() < 2, diff.mean()
        assert fast.thumbnail(256).shape == (192, 256, 3)


def test_levels_of_scanner_sizes_keep_the_fast_path(
    tmp_path_factory: pytest.TempPathFactory, tissue: np.ndarray
):
    """Scanners write level k as floor(level 0 / 4^k) px, so OpenSlide's downsample is not a
    whole number (1999 -> 499: 4.0043). The open-time identity check compared the busiest
    tile against OpenSlide at a level-0 location that divides back to a fraction, so
    OpenSlide interpolated, the check failed, and the level silently lost the fast path (here
    level 1, whose busiest 240-px tile is in column 1). It compares an exactly reachable tile."""
    path = foreign_slide(tmp_path_factory, tissue, "svs-rgb-tables-240")
    with tifffile.TiffFile(path) as tif:
        counts = np.asarray(tif.pages[2].databytecounts)
    across = -(-499 // 240)
    assert int(np.argmax(counts)) % across != 0  # the busiest tile is off column 0
    with open_slide(path) as r:
        assert r.level_downsamples[1] == pytest.approx(4.0043, abs=1e-4)
        assert r.fast_levels == (0, 1, 2)


@pytest.mark.parametrize(
    ("compression", "named"),
    [("jpeg2000", "JPEG2000 (TIFF compression 34712)"), ("lzma", "LZMA (TIFF compression 34925)")],
)
def test_tiles_in_a_compression_openslide_cannot_decode_are_named_not_called_corrupt(
    tmp_path: Path, tissue: np.ndarray, compression: str, named: str
):
    """JPEG 2000 as tifffile and most converters tag it (34712, not Aperio's 33003/33005),
    WebP, LZMA: OpenSlide refuses them at open, and the user read 'truncated or corrupt ...
    copy or export the file again', which copying cannot fix. The compression is named,
    with the conversion that fixes it."""
    path = write_foreign(
        tmp_path / "x.tif",
        tissue[:512, :512],
        Foreign(aperio=None, compression=compression, photometric="rgb"),
    )
    with pytest.raises(SlideError) as err:
        open_slide(path)
    message = str(err.value)
    assert named in message and "OpenSlide cannot decode" in message, message
    assert "tiffsave" in message and "corrupt" not in message and "\n" not in message


def _ome(path: Path, pixels: np.ndarray, size: float | None, unit: str | None) -> Path:
    """An OME-TIFF as tifffile writes it: levels 1-2 as SubIFDs, the pixel size only in the
    OME-XML (PhysicalSizeX/Y, in `unit`; None: the schema's default, µm)."""
    meta: dict[str, object] = {"axes": "YXS"}
    if size is not None:
        meta |= {"PhysicalSizeX": size, "PhysicalSizeY": size}
    if unit is not None:
        meta |= {"PhysicalSizeXUnit": unit, "PhysicalSizeYUnit": unit}
    with tifffile.TiffWriter(path, ome=True) as tif:
        kw = {"tile": (256, 256), "photometric": "rgb", "compression": "jpeg"}
        tif.write(pixels, subifds=2, metadata=meta, **kw)
        for ds in (4, 16):
            tif.write(pixels[::ds, ::ds], subfiletype=1, **kw)
    return path


@pytest.mark.parametrize(
    ("size", "unit", "mpp"),
    [(0.25, None, 0.25), (0.25, "µm", 0.25), (250.0, "nm", 0.25), (None, None, None)],
)
def test_an_ome_tiff_reports_the_pixel_size_of_its_xml(
    tmp_path: Path, tissue: np.ndarray, size: float | None, unit: str | None, mpp: float | None
):
    """OpenSlide opens an OME-TIFF as a generic TIFF and reads no pixel size from its XML:
    the jobs assumed 0.5 µm/px on a 0.25 µm/px slide (cells at twice their size, a mask of
    the wrong scale). The XML's PhysicalSizeX/Y is read, in its unit."""
    with open_slide(_ome(tmp_path / "x.ome.tif", tissue, size, unit)) as r:
        assert r.vendor == "generic-tiff"
        assert r.mpp == (None if mpp is None else pytest.approx(mpp))
        with open_slide(r.path, fast_path=False) as slow:
            np.testing.assert_array_equal(
                r.read_region((0, 0), 0, ODD), slow.read_region((0, 0), 0, ODD)
            )


@pytest.mark.parametrize(("unit", "expected"), [("cm", 0.25), ("inch", 0.25)])
def test_an_svs_without_mpp_in_its_description_reports_the_resolution_tags(
    tmp_path: Path, tissue: np.ndarray, unit: str, expected: float
):
    """OpenSlide takes an Aperio slide's pixel size from the description's MPP only; a
    converter that writes an Aperio description without MPP and the resolution tags with it
    gave 'no pixel size' (0.5 assumed). The tags are read when OpenSlide has none."""
    spec = Foreign(aperio="AppMag = 40", resolution=(0.25, unit))
    with open_slide(write_foreign(tmp_path / "x.svs", tissue, spec)) as r:
        assert r.vendor == "aperio"
        assert r.mpp == pytest.approx(expected)


def test_the_description_mpp_wins_over_the_resolution_tags(tmp_path: Path, tissue: np.ndarray):
    spec = Foreign(aperio="MPP = 0.2527", resolution=(1.0, "cm"))
    with open_slide(write_foreign(tmp_path / "x.svs", tissue, spec)) as r:
        assert r.mpp == pytest.approx(0.2527)


def test_resolution_tags_without_a_unit_are_no_pixel_size(tmp_path: Path, tissue: np.ndarray):
    """tifffile and many writers put XResolution = 1 with ResolutionUnit NONE: not a size."""
    spec = Foreign(aperio="AppMag = 40")
    path = write_foreign(tmp_path / "x.svs", tissue, spec)
    with open_slide(path) as r:
        assert r.properties["tiff.ResolutionUnit"] == "none"
        assert r.mpp is None


@pytest.mark.parametrize(("unit", "mpp"), [("CENTIMETER", 0.25), ("INCH", 0.25), ("NONE", None)])
def test_a_stripped_tiff_reports_the_pixel_size_of_its_resolution_tags(
    tmp_path: Path, tissue: np.ndarray, unit: str, mpp: float | None
):
    """A small slide written as a plain (stripped, not tiled) TIFF opens with Pillow, which
    reported no pixel size even when the resolution tags give one: the jobs assumed 0.5 µm/px
    on a 0.25 µm/px slide. The tags in cm or inches are read, as OpenSlide reads a tiled
    TIFF's; without a unit there is no size."""
    per = {"CENTIMETER": 1e4, "INCH": 25400.0, "NONE": 1e4}[unit]
    path = tmp_path / "x.tif"
    tifffile.imwrite(
        path,
        tissue,
        photometric="rgb",
        compression="lzw",
        rowsperstrip=64,
        resolution=(per / 0.25, per / 0.25),
        resolutionunit=unit,
        metadata=None,
    )
    with open_slide(path) as r:
        assert r.backend == "pillow"
        assert r.mpp == (None if mpp is None else pytest.approx(mpp))
        np.testing.assert_array_equal(r.read_region((0, 0), 0, ODD), tissue)


def test_an_svs_with_a_tiled_label_is_refused_naming_the_page(
    tmp_path: Path, tissue: np.ndarray, capfd: pytest.CaptureFixture[str]
):
    """OpenSlide takes every tiled page of an SVS as a level; a label written tiled (300x280
    after the 124x93 level) breaks the order and OpenSlide refuses the file, printing a GLib
    warning on stderr and saying 'Unsupported or missing image file': the user read
    'truncated or corrupt ... copy or export the file again' under a stray warning line.
    It is refused before OpenSlide sees it, in one line naming the page and the fix."""
    path = write_foreign(tmp_path / "x.svs", tissue, Foreign(tiled_label=True))
    with pytest.raises(SlideError) as err:
        open_slide(path)
    message = str(err.value)
    assert "tiled page 4 (280x300 px) after a smaller level (page 3, 124x93 px)" in message
    assert "write those pages as strips" in message and "corrupt" not in message, message
    assert "OpenSlide-WARNING" not in capfd.readouterr().err


def test_an_svs_with_strip_label_and_macro_still_opens(tmp_path: Path, tissue: np.ndarray):
    path = write_foreign(tmp_path / "x.svs", tissue, Foreign())
    with open_slide(path) as r:
        assert r.level_count == 3 and set(r.associated_images) == {"label", "macro", "thumbnail"}
        assert r.associated_image("label").shape == (300, 280, 3)


@pytest.mark.parametrize(
    ("description", "mpp"),
    [
        ("converted 1999x1501|AppMag = 40|MPP = 0.2527|Left = 1", 0.2527),
        ("x|MPP=0.2527", 0.2527),
        ("x|MPP = nonsense|AppMag = 40", None),
        ("x|AppMag = 40", None),
    ],
)
def test_aperio_fields_in_a_description_openslide_does_not_take_for_aperio(
    tmp_path: Path, tissue: np.ndarray, description: str, mpp: float | None
):
    """OpenSlide takes a description for Aperio's only when it starts with "Aperio"; a
    converter that copies the `|MPP = x|` fields without that first line made a generic TIFF
    with 'no pixel size' (0.5 assumed). The field is read when nothing else gives a size."""
    path = tmp_path / "x.tif"
    tifffile.imwrite(
        path, tissue, tile=(256, 256), photometric="rgb", description=description, metadata=None
    )
    with open_slide(path) as r:
        assert r.vendor == "generic-tiff"
        assert r.mpp == (None if mpp is None else pytest.approx(mpp))


def test_a_tiled_label_smaller_than_the_last_level_is_never_the_level_a_job_reads(
    tmp_path: Path, tissue: np.ndarray
):
    """A 64x64 label written tiled after the 124x93 level: OpenSlide lists it as level 3
    (downsample 27.3), and best_level_for_downsample(32), what TISSUE_MASK asks at 8 µm/px
    on a 0.25 µm/px slide, picked it: the mask was the label (31.2 x 23.5 px per mask px,
    100 % tissue). The level stays listed, as OpenSlide has it, but no job picks it."""
    spec = Foreign(tiled_label=True, label_size=(64, 64))
    path = write_foreign(tmp_path / "x.svs", tissue, spec)
    with open_slide(path) as r, open_slide(path, fast_path=False) as slow:
        assert r.level_dimensions == slow.level_dimensions
        assert r.level_dimensions[3] == (64, 64) and r.level_count == 4
        assert r.stray_levels == {3}
        assert r.best_level_for_downsample(32) == 2
        assert r.best_level_for_downsample(1000) == 2
        assert r.thumbnail_plan(64)[0] == 2
        # Still readable as OpenSlide reads it.
        np.testing.assert_array_equal(
            r.read_region((0, 0), 3, (64, 64)), slow.read_region((0, 0), 3, (64, 64))
        )


@pytest.mark.parametrize("name", ["svs-decimated-ceil-240", "svs-rgb-jpeg-ds2", "tif-lzw-no-mpp"])
def test_real_levels_are_never_stray(
    tmp_path_factory: pytest.TempPathFactory, tissue: np.ndarray, name: str
):
    with open_slide(foreign_slide(tmp_path_factory, tissue, name)) as r:
        assert r.stray_levels == frozenset()
        assert r.best_level_for_downsample(1000) == r.level_count - 1


def test_scanner_level_sizes_down_to_a_few_px_are_not_stray():
    from wsitui.slides.reader.base import stray_levels

    for w0, h0 in [(1999, 1501), (46000, 32914), (100_001, 20_003), (513, 4097)]:
        dims = [(w0, h0)]
        for k in range(1, 12):
            for rnd in (math.floor, math.ceil):
                w, h = rnd(w0 / 2**k), rnd(h0 / 2**k)
                if min(w, h) >= 1:
                    dims.append((w, h))
        assert stray_levels(tuple(dims)) == frozenset(), (w0, h0)


def test_a_tiled_reduced_label_in_a_generic_pyramid_is_stray(tmp_path: Path, tissue: np.ndarray):
    """OpenSlide sorts a generic TIFF's tiled reduced pages by size: a 288x304 label flagged
    reduced landed between the 499x375 and 124x93 levels, as level 2 (downsample 5.9)."""
    path = write_foreign(
        tmp_path / "x.tif", tissue, Foreign(aperio=None, compression="lzw", photometric="rgb")
    )
    with tifffile.TiffWriter(path, append=True) as tif:
        label = np.full((304, 288, 3), 40, np.uint8)
        tif.write(label, tile=(64, 64), photometric="rgb", subfiletype=1, metadata=None)
    with open_slide(path) as r:
        assert r.level_dimensions[2] == (288, 304)
        assert r.stray_levels == {2}
        assert r.best_level_for_downsample(8) == 1 and r.best_level_for_downsample(16.2) == 3


def test_a_page_with_a_1_px_side_is_stray():
    """A 1 px side fits any factor over half the other side: the slack of a 1 px side was
    >= 100 %, so a 1 x 94 page of a 2000 x 1500 image was a level (downsample 1008)."""
    from wsitui.slides.reader.base import stray_levels

    dims = ((2000, 1500), (500, 375), (1, 94), (500, 1), (1, 1), (125, 94))
    assert stray_levels(dims) == {2, 3}  # 1 x 1 agrees with any factor over 2000: a level
    # A level of 1 px across is one when down agrees (a tall thin image's last levels).
    assert stray_levels(((513, 4097), (1, 8), (1, 2))) == frozenset()
