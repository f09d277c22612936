"""Tiled TIFFs whose pyramid OpenSlide does not see (OME-TIFF SubIFD levels, reduced pages
without the reduced flag): read with tifffile at every level (TiffPyramidReader), not as
OpenSlide's level 0 alone, with level 0 pixel-identical to OpenSlide's."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.slides.foreign import ODD, Foreign, tissue_pixels, write_foreign
from wsitui.slides.errors import SlideError
from wsitui.slides.reader import OpenSlideReader, TiffPyramidReader, open_slide
from wsitui.slides.reader.tifffile_reader import MAX_SUBIFDS

SIZES = ((1999, 1501), (499, 375), (124, 93))  # floor(level 0 / 4^k), as foreign.pyramid
VARIANTS: dict[str, tuple[Foreign, float | None]] = {
    # OME-TIFF as tifffile / QuPath / bfconvert write it: SubIFDs, PhysicalSizeX/Y in the XML.
    "ome-jpeg-256": (
        Foreign(aperio=None, subifds=True, compression="jpeg", photometric="rgb", ome_mpp=0.25),
        0.25,
    ),
    # ... with shared JPEGTables and YCbCr 2x2 tiles, tile 240.
    "ome-tables-ycbcr-240": (Foreign(aperio=None, subifds=True, tile=240, ome_mpp=0.5), 0.5),
    "ome-deflate-512": (
        Foreign(
            aperio=None,
            subifds=True,
            compression="deflate",
            photometric="rgb",
            tile=512,
            ome_mpp=0.25,
        ),
        0.25,
    ),
    # SubIFDs in a plain (not OME) TIFF, the pixel size in the resolution tags.
    "tif-subifds-cm": (
        Foreign(aperio=None, subifds=True, compression="jpeg", resolution=(0.5, "cm")),
        0.5,
    ),
    # A generic pyramid whose reduced pages lack the reduced flag: OpenSlide skips them.
    "tif-unflagged-lzw": (
        Foreign(aperio=None, compression="lzw", photometric="rgb", reduced_flag=False),
        None,
    ),
    "tif-unflagged-inch": (
        Foreign(aperio=None, compression="jpeg", reduced_flag=False, resolution=(0.5, "inch")),
        0.5,
    ),
}


@pytest.fixture(scope="session")
def tissue(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return tissue_pixels(tmp_path_factory)


_written: dict[str, Path] = {}


def slide(factory: pytest.TempPathFactory, tissue: np.ndarray, name: str) -> Path:
    if name not in _written:
        _written[name] = write_foreign(
            factory.mktemp(name) / "slide.tif", tissue, VARIANTS[name][0]
        )
    return _written[name]


def stored_levels(path: Path) -> dict[tuple[int, int], np.ndarray]:
    """tifffile's own decoding of every tiled page and SubIFD, by (width, height)."""
    out = {}
    with tifffile.TiffFile(path) as tif:
        pages = list(tif.pages)
        if tif.pages[0].subifds:
            pages += list(tifffile.TiffPages(tif.pages[0], index=0))
        for page in pages:
            out.setdefault((page.imagewidth, page.imagelength), page.asarray())
    return out


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_pyramid_openslide_misses_is_read_at_every_level(
    tmp_path_factory: pytest.TempPathFactory, tissue: np.ndarray, name: str
):
    path = slide(tmp_path_factory, tissue, name)
    with open_slide(path) as r, open_slide(path, fast_path=False) as slow:
        # OpenSlide alone sees level 0 only: what every read decoded before.
        assert isinstance(slow, OpenSlideReader) and slow.level_count == 1
        assert isinstance(r, TiffPyramidReader)
        assert (r.backend, r.vendor) == ("tifffile", "generic-tiff")
        assert r.level_dimensions == SIZES
        assert r.level_downsamples[0] == 1.0
        np.testing.assert_allclose(r.level_downsamples[1:], [4.0043, 16.1304], atol=1e-4)
        want_mpp = VARIANTS[name][1]
        assert r.mpp == (None if want_mpp is None else pytest.approx(want_mpp))
        assert r.properties["openslide.level-count"] == "3"
        assert r.associated_images == ()
        # Every level's pixels are tifffile's own decoding of its page.
        stored = stored_levels(path)
        for level, dims in enumerate(SIZES):
            np.testing.assert_array_equal(r.read_level(level), stored[dims])
        # Level 0 is OpenSlide's, region by region, across tile edges and past the image.
        tile = VARIANTS[name][0].tile
        regions = [
            ((tile - 7, tile - 5), (300, 20)),
            ((-30, -20), (70, 60)),
            ((1990, 1490), (40, 40)),
        ]
        rng = np.random.default_rng(3)
        for _ in range(20):
            x, y = (int(v) for v in rng.integers(-40, 1999, 2))
            regions.append(((x, y), tuple(int(v) for v in rng.integers(1, 400, 2))))
        for loc, size in regions:
            np.testing.assert_array_equal(
                r.read_region(loc, 0, size), slow.read_region(loc, 0, size)
            )
        # Reduced levels: a level-0 location becomes the level pixel it names.
        for level in (1, 2):
            ds = r.level_downsamples[level]
            page = stored[SIZES[level]]
            for lx, ly, w, h in [(0, 0, 50, 40), (tile - 3, 5, 9, 90), (40, 30, 200, 200)]:
                got = r.read_region((round(lx * ds), round(ly * ds)), level, (w, h))
                want = np.full((h, w, 3), 255, np.uint8)
                part = page[ly : ly + h, lx : lx + w]
                want[: part.shape[0], : part.shape[1]] = part
                np.testing.assert_array_equal(got, want)
        # Jobs and the viewer pick the coarse levels: a thumbnail reads level 2, not level 0.
        assert r.best_level_for_downsample(16.5) == 2
        assert r.thumbnail_plan(256)[0] == 1 and r.thumbnail_plan(100)[0] == 2
        assert r.thumbnail(256).shape == (192, 256, 3)
        if want_mpp is not None:
            got = r.read_region((0, 0), 0, ODD).astype(np.int16)
            assert np.abs(got - tissue).mean() < 2  # the tissue written (JPEG: close)


def test_reads_from_many_threads_give_the_serial_pixels(
    tmp_path_factory: pytest.TempPathFactory, tissue: np.ndarray
):
    """Jobs read one reader from worker threads: tiles come from pread and a locked cache."""
    path = slide(tmp_path_factory, tissue, "ome-jpeg-256")
    rng = np.random.default_rng(9)
    jobs = []
    for _ in range(60):
        level = int(rng.integers(0, 3))
        w, h = SIZES[level]
        jobs.append((level, int(rng.integers(0, w)), int(rng.integers(0, h))))
    with open_slide(path) as ref:
        want = [ref._read_level_px(lv, x, y, 200, 150) for lv, x, y in jobs]
    with open_slide(path) as r:
        got: list[np.ndarray | None] = [None] * len(jobs)
        errors: list[BaseException] = []

        def work(k: int) -> None:
            try:
                for i in range(k, len(jobs), 4):
                    lv, x, y = jobs[i]
                    got[i] = r._read_level_px(lv, x, y, 200, 150)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_pyramids_openslide_reads_stay_with_openslide(tmp_path: Path, tissue: np.ndarray):
    """Flagged reduced pages (OpenSlide lists them) and a single-level TIFF: nothing to take."""
    flagged = write_foreign(
        tmp_path / "f.tif", tissue, Foreign(aperio=None, compression="lzw", photometric="rgb")
    )
    single = write_foreign(
        tmp_path / "s.tif",
        tissue,
        Foreign(aperio=None, compression="lzw", photometric="rgb", downsamples=(1,)),
    )
    with open_slide(flagged) as f, open_slide(single) as s:
        assert isinstance(f, OpenSlideReader) and f.level_count == 3
        assert isinstance(s, OpenSlideReader) and s.level_count == 1


def test_a_subifd_of_another_aspect_is_no_level(tmp_path: Path, tissue: np.ndarray):
    """A label or macro kept as a SubIFD (reduced by different factors across and down)."""
    path = tmp_path / "x.ome.tif"
    kw = {"tile": (256, 256), "photometric": "rgb", "compression": "jpeg"}
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(tissue, subifds=2, metadata={"axes": "YXS"}, **kw)
        tif.write(np.ascontiguousarray(tissue[::4, ::4]), subfiletype=1, **kw)
        tif.write(np.full((300, 280, 3), 40, np.uint8), subfiletype=1, **kw)
    with open_slide(path) as r:
        assert isinstance(r, TiffPyramidReader)
        assert r.level_dimensions == ((1999, 1501), (500, 376))


def _one_line(err: pytest.ExceptionInfo[SlideError], *parts: str) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, (part, message)
    return message


def test_a_corrupt_subifd_tile_is_one_line(tmp_path: Path, tissue: np.ndarray):
    src = write_foreign(
        tmp_path / "ok.tif",
        tissue,
        Foreign(aperio=None, subifds=True, compression="jpeg", photometric="rgb", ome_mpp=0.25),
    )
    data = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tif:
        sub = tifffile.TiffPages(tif.pages[0], index=0)[0]
        off, count = sub.dataoffsets[0], sub.databytecounts[0]
    data[off + 2 : off + count] = bytes(count - 2)  # past SOI: the JPEG markers are gone
    bad = tmp_path / "bad.tif"
    bad.write_bytes(bytes(data))
    with open_slide(bad) as r:
        assert isinstance(r, TiffPyramidReader)
        r.read_region((0, 0), 0, (300, 300))  # level 0 is untouched
        with pytest.raises(SlideError) as err:
            r.read_region((0, 0), 1, (100, 100))
    _one_line(err, "bad.tif", "truncated or corrupt", "tile 0 of level 1")


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("tiles", "image data of SubIFD 1 of page 0 ends at byte"),
        ("directory", "corrupted IFD structure"),
    ],
)
def test_a_truncated_pyramid_is_one_line_at_open(
    tmp_path: Path, tissue: np.ndarray, where: str, says: str
):
    """Cut inside the last SubIFD's tiles or its directory: OpenSlide (level 0 only) would
    open it and never see the damage."""
    src = write_foreign(
        tmp_path / "ok.tif",
        tissue,
        Foreign(aperio=None, subifds=True, compression="deflate", photometric="rgb"),
    )
    with tifffile.TiffFile(src) as tif:
        last = list(tifffile.TiffPages(tif.pages[0], index=0))[-1]
        cut = int(last.dataoffsets[-1]) + 10 if where == "tiles" else int(last.offset) + 4
    bad = tmp_path / "cut.tif"
    bad.write_bytes(src.read_bytes()[:cut])
    with open_slide(bad, fast_path=False) as r:
        assert r.level_count == 1
    with pytest.raises(SlideError) as err:
        open_slide(bad)
    _one_line(err, "cut.tif", "truncated or corrupt", says, "copy or export the file again")


def test_a_level_with_tiles_over_the_budget_is_refused(tmp_path: Path, tissue: np.ndarray):
    """check_tiff_complete sees top-level pages only: a SubIFD's budgets are checked here."""
    path = tmp_path / "x.tif"
    kw = {"photometric": "rgb", "compression": "zlib", "metadata": None}
    with tifffile.TiffWriter(path) as tif:
        tif.write(tissue, subifds=1, tile=(256, 256), **kw)
        tif.write(np.ascontiguousarray(tissue[::16, ::16]), subfiletype=1, tile=(4096, 4112), **kw)
    with pytest.raises(SlideError) as err:
        open_slide(path)
    _one_line(err, "4,112x4,096 px tiles (SubIFD 0 of page 0)", "256 or 512 is usual")


def test_a_subifd_in_a_compression_the_fast_path_does_not_decode_is_left_out(
    tmp_path: Path, tissue: np.ndarray
):
    """Not decoded as OpenSlide would decode it: no level (the others still are)."""
    path = tmp_path / "x.tif"
    kw = {"tile": (256, 256), "photometric": "rgb", "metadata": None}
    with tifffile.TiffWriter(path) as tif:
        tif.write(tissue, subifds=2, compression="zlib", **kw)
        tif.write(np.ascontiguousarray(tissue[::4, ::4]), subfiletype=1, compression="zlib", **kw)
        tif.write(np.ascontiguousarray(tissue[::16, ::16]), subfiletype=1, compression="zstd", **kw)
    with open_slide(path) as r:
        assert isinstance(r, TiffPyramidReader)
        assert r.level_dimensions == ((1999, 1501), (500, 376))


def _point_subifds(path: Path, count: int) -> None:
    """Rewrite page 0's SubIFDs tag to `count` offsets, all to its first SubIFD (appended)."""
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags[330]
        entry, first = tag.offset, int(tif.pages[0].subifds[0])
    with path.open("r+b") as f:
        end = f.seek(0, 2)
        f.write(struct.pack("<I", first) * count)
        f.seek(entry + 4)  # classic TIFF entry: code, type, count, value offset
        f.write(struct.pack("<II", count, end))


def test_page_0_with_too_many_subifds_stays_with_openslide(tmp_path: Path, tissue: np.ndarray):
    """200,000 SubIFD offsets took 44 s to parse (OpenSlide, which ignores them, opened the
    file at once): no pyramid has that many levels, so OpenSlide reads it, level 0 alone."""
    path = write_foreign(
        tmp_path / "x.ome.tif",
        tissue,
        Foreign(aperio=None, subifds=True, compression="jpeg", photometric="rgb"),
    )
    _point_subifds(path, MAX_SUBIFDS)
    with open_slide(path) as r:
        assert isinstance(r, TiffPyramidReader) and r.level_dimensions == SIZES[:2]
    _point_subifds(path, MAX_SUBIFDS + 1)
    with open_slide(path) as r:
        assert isinstance(r, OpenSlideReader) and r.level_dimensions == SIZES[:1]


def _patch_subifd_entry(path: Path, subifd: int, code: int, fmt: str, at: int, *values: int):
    """Overwrite bytes `at` of tag `code`'s 12-byte entry in a SubIFD of page 0."""
    with tifffile.TiffFile(path) as tif:
        offset = int(tif.pages[0].subifds[subifd])
    with path.open("r+b") as f:
        f.seek(offset)
        (n,) = struct.unpack("<H", f.read(2))
        for k in range(n):
            f.seek(offset + 2 + 12 * k)
            if struct.unpack("<H", f.read(2))[0] == code:
                f.seek(offset + 2 + 12 * k + at)
                f.write(struct.pack(fmt, *values))
                return
    raise AssertionError(f"no tag {code} in SubIFD {subifd}")


def _ome(path: Path, tissue: np.ndarray) -> Path:
    spec = Foreign(aperio=None, subifds=True, compression="jpeg", photometric="rgb")
    return write_foreign(path, tissue, spec)


def test_a_subifd_tag_tifffile_skips_leaves_the_slide_to_openslide(
    tmp_path: Path, tissue: np.ndarray
):
    """A tag of a data type tifffile does not know (it skips the tag with a log message):
    not damage, but that level's decode is in doubt. The slide opened (level 0 alone) before
    the takeover; it was refused with a Python repr in the line."""
    path = _ome(tmp_path / "x.ome.tif", tissue)
    _patch_subifd_entry(path, 1, 284, "<H", 2, 99)  # PlanarConfiguration: data type 99
    with open_slide(path) as r:
        assert isinstance(r, OpenSlideReader) and r.level_dimensions == SIZES[:1]
        r.read_region((0, 0), 0, (300, 300))


@pytest.mark.parametrize(
    ("code", "at", "says"),
    [
        (258, 8, "tag 258 of SubIFD 1 of page 0 ends at byte"),  # BitsPerSample's 3 shorts
        (330, 0, "SubIFD 1 of page 0 starts at byte"),  # page 0's SubIFDs tag: see below
    ],
)
def test_a_subifd_pointing_past_the_end_is_one_line_at_open(
    tmp_path: Path, tissue: np.ndarray, code: int, at: int, says: str
):
    path = _ome(tmp_path / "x.ome.tif", tissue)
    size = path.stat().st_size
    if code == 330:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags[330]
            where = tag.valueoffset if tag.count * 4 > 4 else tag.offset + 8
        with path.open("r+b") as f:
            f.seek(where + 4)
            f.write(struct.pack("<I", size + 10))
    else:
        _patch_subifd_entry(path, 1, code, "<I", at, size - 2)
    with pytest.raises(SlideError) as err:
        open_slide(path)
    _one_line(err, "x.ome.tif", "truncated or corrupt", says, f"the file has {size:,} bytes")


def test_a_listed_level_the_identity_check_did_not_prove_keeps_openslide(
    tmp_path: Path, tissue: np.ndarray, monkeypatch: pytest.MonkeyPatch
):
    """Level 1 flagged reduced (OpenSlide lists it), level 2 not (it does not). When the
    open-time check finds tifffile's level 1 differs from OpenSlide's, the OpenSlide reader
    reads level 1 with OpenSlide; the takeover read it with tifffile all the same."""
    path = tmp_path / "x.tif"
    kw = {"tile": (256, 256), "photometric": "rgb", "compression": "jpeg", "metadata": None}
    with tifffile.TiffWriter(path) as tif:
        tif.write(tissue, **kw)
        tif.write(np.ascontiguousarray(tissue[::4, ::4]), subfiletype=1, **kw)
        tif.write(np.ascontiguousarray(tissue[::16, ::16]), **kw)  # unflagged
    with open_slide(path) as r:  # every listed level proven: taken over
        assert isinstance(r, TiffPyramidReader) and r.level_count == 3
    setup = OpenSlideReader._setup_fast_path

    def level_1_differs(self: OpenSlideReader) -> None:
        setup(self)
        assert 1 in self._fast
        del self._fast[1]  # what the check does when the busiest tile is not OpenSlide's

    monkeypatch.setattr(OpenSlideReader, "_setup_fast_path", level_1_differs)
    with open_slide(path) as r, open_slide(path, fast_path=False) as slow:
        assert isinstance(r, OpenSlideReader) and r.fast_levels == (0,)
        assert r.level_dimensions == slow.level_dimensions == ((1999, 1501), (500, 376))
        np.testing.assert_array_equal(
            r.read_region((0, 0), 1, (500, 376)), slow.read_region((0, 0), 1, (500, 376))
        )


def test_a_subifd_offset_into_the_header_leaves_the_slide_to_openslide(
    tmp_path: Path, tissue: np.ndarray
):
    """SubIFD offset 0 (tifffile: 'invalid SubIFDs'): not a pyramid to read, and not data
    past the end either; OpenSlide, which ignores SubIFDs, opens level 0 as it did before."""
    path = _ome(tmp_path / "x.ome.tif", tissue)
    with tifffile.TiffFile(path) as tif:
        at = tif.pages[0].tags[330].valueoffset
    with path.open("r+b") as f:
        f.seek(at)
        f.write(struct.pack("<I", 0))
    with open_slide(path) as r:
        assert isinstance(r, OpenSlideReader) and r.level_dimensions == SIZES[:1]


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_the_raw_tag_check_reads_every_tiff_layout(tmp_path: Path, bigtiff: bool, byteorder: str):
    """The past-the-end check reads SubIFD entries itself (tifffile drops such a tag): classic
    and BigTIFF, either byte order; a tag value ending one byte past the end is named."""
    from wsitui.slides.reader.tifffile_reader import _check_tag_values

    path = tmp_path / "x.tif"
    img = np.random.default_rng(0).integers(0, 255, (600, 700, 3), dtype=np.uint8)
    kw = {"tile": (128, 128), "photometric": "rgb", "compression": "zlib"}
    with tifffile.TiffWriter(path, bigtiff=bigtiff, byteorder=byteorder) as tif:
        tif.write(img, subifds=1, metadata=None, **kw)
        tif.write(np.ascontiguousarray(img[::2, ::2]), subfiletype=1, **kw)
    size = path.stat().st_size
    with tifffile.TiffFile(path) as tif:
        offset = int(tif.pages[0].subifds[0])
        tag = tifffile.TiffPages(tif.pages[0], index=0)[0].tags[324]  # TileOffsets
        end = tag.valueoffset + tag.count * (8 if bigtiff else 4)
        _check_tag_values(path, tif, offset, size, "SubIFD 0")  # the whole file: fine
        with pytest.raises(SlideError) as err:
            _check_tag_values(path, tif, offset, end - 1, "SubIFD 0")
        _one_line(err, f"tag 324 of SubIFD 0 ends at byte {end:,}")
        with pytest.raises(SlideError) as err:
            _check_tag_values(path, tif, offset, offset + 5, "SubIFD 0")
        _one_line(err, "the directory of SubIFD 0 runs past the end")
