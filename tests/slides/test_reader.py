import io
import itertools
import math
import os
import shutil
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from tests.slides.samples import SINGLE_LEVEL_SCALE, SIZE, record_reads, zero_tile_bytecounts
from wsitui.slides.errors import SlideError
from wsitui.slides.reader import (
    OpenSlideReader,
    PillowReader,
    composite,
    open_slide,
    shared_openslide_cache,
)
from wsitui.slides.reader import base as reader_base
from wsitui.slides.reader import openslide_reader as reader_openslide
from wsitui.slides.reader import pillow_reader as reader_pillow


@pytest.fixture(scope="module")
def fast(sample_slide: Path):
    r = open_slide(sample_slide)
    yield r
    r.close()


@pytest.fixture(scope="module")
def slow(sample_slide: Path):
    r = open_slide(sample_slide, fast_path=False)
    yield r
    r.close()


def test_metadata(fast: OpenSlideReader):
    assert fast.vendor == "aperio"
    assert fast.backend == "tifffile+openslide"
    assert fast.fast_levels == (0, 1, 2)
    assert fast.dimensions == SIZE
    assert fast.level_count == 3
    assert fast.level_dimensions == ((4096, 3072), (1024, 768), (256, 192))
    assert fast.level_downsamples == (1.0, 4.0, 16.0)
    assert fast.mpp == pytest.approx(0.499)
    assert set(fast.associated_images) == {"label", "macro", "thumbnail"}
    assert fast.associated_image("label").shape == (400, 400, 3)
    with pytest.raises(SlideError, match="has no associated image 'barcode'"):
        fast.associated_image("barcode")


def test_slow_reader_is_plain_openslide(slow: OpenSlideReader):
    assert slow.backend == "openslide"
    assert slow.fast_levels == ()


REGIONS = [
    # (x, y, level, w, h) in level-0 coords, aligned to the level's downsample
    (0, 0, 0, 256, 256),  # exactly one TIFF tile
    (200, 230, 0, 100, 90),  # across a 4-tile corner
    (1017, 509, 0, 700, 333),  # many tiles, odd offsets
    (3900, 2900, 0, 400, 300),  # past the right and bottom edges
    (-50, -70, 0, 120, 100),  # before the top-left corner
    (5000, 100, 0, 64, 64),  # entirely outside
    (0, 0, 1, 1024, 768),  # whole level 1
    (1020, 1020, 1, 300, 300),  # level 1 across tiles
    (3996, 2996, 1, 60, 60),  # level 1 at the edge
    (0, 0, 2, 256, 192),  # whole level 2
    (16 * 100, 16 * 50, 2, 200, 200),  # level 2 past the edge
]


@pytest.mark.parametrize(("x", "y", "level", "w", "h"), REGIONS)
def test_tifffile_and_openslide_pixels_are_identical(fast, slow, x, y, level, w, h):
    a = fast.read_region((x, y), level, (w, h))
    b = slow.read_region((x, y), level, (w, h))
    assert a.shape == b.shape == (h, w, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)


def test_random_regions_identical(fast, slow):
    rng = np.random.default_rng(7)
    for _ in range(60):
        level = int(rng.integers(0, 3))
        ds = int(fast.level_downsamples[level])
        x = int(rng.integers(-200, SIZE[0] + 100)) // ds * ds
        y = int(rng.integers(-200, SIZE[1] + 100)) // ds * ds
        w, h = (int(v) for v in rng.integers(1, 600, 2))
        np.testing.assert_array_equal(
            fast.read_region((x, y), level, (w, h)), slow.read_region((x, y), level, (w, h))
        )


def test_unaligned_location_goes_through_openslide(fast, slow, monkeypatch):
    # x=5 at level 1 is 1.25 level pixels: OpenSlide interpolates, so the fast path must not
    # be used there. Prove it goes to OpenSlide by making tifffile tiles unavailable.
    monkeypatch.setattr(fast, "_read_tiles", lambda *a: pytest.fail("tifffile path used"))
    np.testing.assert_array_equal(
        fast.read_region((5, 7), 1, (100, 80)), slow.read_region((5, 7), 1, (100, 80))
    )


def test_outside_the_image_is_white_not_black(fast, slow):
    for r in (fast, slow):
        out = r.read_region((SIZE[0] - 10, 0), 0, (50, 20))
        assert (out[:, 10:] == 255).all()
        # The 10 columns inside are the slide's own pixels (glass is ~243, never pure white),
        # the same as reading them alone: the padding did not shift or overwrite them.
        inside = r.read_region((SIZE[0] - 10, 0), 0, (10, 20))
        np.testing.assert_array_equal(out[:, :10], inside)
        assert (inside < 255).any(axis=2).all()


def test_composite_onto_background():
    rgba = np.array([[[200, 0, 0, 255], [200, 0, 0, 0], [200, 0, 0, 128]]], np.uint8)
    out = composite(rgba)
    assert out.tolist() == [[[200, 0, 0], [255, 255, 255], [227, 127, 127]]]
    assert composite(rgba, (0, 0, 255)).tolist()[0][1] == [0, 0, 255]


def test_rgba_png_composited_onto_white(tmp_path: Path):
    a = np.zeros((50, 60, 4), np.uint8)
    a[..., 0] = 200
    a[:25, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(a).save(tmp_path / "x.png")
    with open_slide(tmp_path / "x.png") as r:
        assert isinstance(r, PillowReader)
        img = r.read_region((0, 0), 0, (60, 50))
    assert (img[:25] == (200, 0, 0)).all()
    assert (img[25:] == 255).all()


def test_pillow_reader_pyramid_and_regions(tmp_path: Path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (1100, 1300, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    with open_slide(tmp_path / "x.png") as r:
        assert (r.vendor, r.backend, r.mpp) == (None, "pillow", None)
        assert r.level_dimensions == ((1300, 1100), (325, 275))
        np.testing.assert_array_equal(r.read_region((100, 200), 0, (50, 40)), arr[200:240, 100:150])
        low = r.read_region((0, 0), 1, (325, 275))
        want = np.asarray(Image.fromarray(arr).reduce(4))
        np.testing.assert_array_equal(low, want)
        assert r.best_level_for_downsample(16) == 1
        assert r.thumbnail(100).shape == (85, 100, 3)
    with pytest.raises(SlideError, match="is closed"):
        r.read_region((0, 0), 0, (1, 1))


def test_thumbnail_and_best_level(fast: OpenSlideReader):
    assert fast.best_level_for_downsample(0.5) == 0
    assert fast.best_level_for_downsample(3.99) == 0
    assert fast.best_level_for_downsample(4) == 1
    assert fast.best_level_for_downsample(15.9) == 1
    assert fast.best_level_for_downsample(100) == 2
    th = fast.thumbnail(512)
    assert th.shape == (384, 512, 3)
    assert fast.thumbnail((100, 100)).shape == (75, 100, 3)


def test_bad_region_arguments(fast: OpenSlideReader):
    with pytest.raises(ValueError, match=r"level 3 does not exist in '.*sample\.svs': use 0-2"):
        fast.read_region((0, 0), 3, (10, 10))
    with pytest.raises(ValueError, match="region size 0x10 is invalid"):
        fast.read_region((0, 0), 0, (0, 10))


def test_concurrent_reads_give_correct_pixels(sample_slide: Path, slow: OpenSlideReader):
    rng = np.random.default_rng(3)
    jobs = []
    for _ in range(120):
        level = int(rng.integers(0, 3))
        ds = int(slow.level_downsamples[level])
        x = int(rng.integers(0, SIZE[0] - 300)) // ds * ds
        y = int(rng.integers(0, SIZE[1] - 300)) // ds * ds
        jobs.append((x, y, level))
    want = [slow.read_region((x, y), lv, (300, 200)) for x, y, lv in jobs]
    for fast_path in (True, False):
        with open_slide(sample_slide, fast_path=fast_path) as r, ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda j, r=r: r.read_region((j[0], j[1]), j[2], (300, 200)), jobs))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_all_handles_share_one_openslide_cache(sample_slide: Path, monkeypatch):
    seen = []
    real = openslide.OpenSlide.set_cache
    monkeypatch.setattr(
        openslide.OpenSlide, "set_cache", lambda self, c: (seen.append(c), real(self, c))[1]
    )
    with open_slide(sample_slide), open_slide(sample_slide, fast_path=False):
        assert len(seen) == 2 and seen[0] is seen[1] is shared_openslide_cache()


def test_closed_slides_keep_no_openslide_cache(sample_slide: Path, monkeypatch):
    """A cohort opens slide after slide, two at a time: the caches (and the decoded tiles) of
    closed slides must be freed, or RSS grows with the cohort (~0.5 MB a slide, issue #18)."""
    import gc
    import weakref

    import wsitui.slides.reader.openslide_reader as openslide_reader

    # slides another test left open keep their cache: this test's slides start a fresh one
    monkeypatch.setattr(openslide_reader, "_current", None)
    seen: list[weakref.ref] = []
    real = openslide.OpenSlide.set_cache
    monkeypatch.setattr(
        openslide.OpenSlide,
        "set_cache",
        lambda self, c: (seen.append(weakref.ref(c)), real(self, c))[1],
    )
    held = open_slide(sample_slide)  # always one slide open while the next one opens
    for _ in range(40):
        nxt = open_slide(sample_slide)
        nxt.read_region((0, 0), 0, (64, 64))
        held.close()
        held = nxt
    gc.collect()
    alive = {id(r()) for r in seen if r() is not None}
    assert len(alive) <= 2  # the open slide's cache, and at most the one before it
    held.close()
    gc.collect()
    assert all(r() is None for r in seen)


class _Dead:
    """Stands in for an OpenSlide handle that has hit an error."""

    def read_region(self, *a):
        raise openslide.OpenSlideError("TIFFRGBAImageGet failed")

    def close(self):
        pass


def test_dead_handle_is_reopened_once(sample_slide: Path, slow: OpenSlideReader):
    with open_slide(sample_slide, fast_path=False) as r:
        r._osr = _Dead()
        np.testing.assert_array_equal(
            r.read_region((0, 0), 0, (64, 64)), slow.read_region((0, 0), 0, (64, 64))
        )
        assert r._generation == 1


def test_second_failure_raises_slide_error(sample_slide: Path, monkeypatch):
    with open_slide(sample_slide, fast_path=False) as r:
        r._osr = _Dead()
        monkeypatch.setattr(r, "_open_handle", lambda: _Dead())
        with pytest.raises(SlideError, match="is truncated or corrupt: read failed twice") as e:
            r.read_region((0, 0), 0, (64, 64))
        assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- bad files


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A ~70-byte PNG whose header claims width x height (CRC fixed): a decompression bomb."""
    buf = io.BytesIO()
    Image.new("1", (8, 8)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    b[16:24] = struct.pack(">II", width, height)  # IHDR data starts at byte 16
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    path.write_bytes(bytes(b))
    return path


def _one_line_error(path: Path, **kw) -> str:
    with pytest.raises(SlideError) as e:
        open_slide(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_missing(tmp_path: Path):
    p = tmp_path / "x.svs"
    assert _one_line_error(p) == f"slide '{p}' does not exist; check the path"


def test_zero_bytes(tmp_path: Path):
    p = tmp_path / "x.svs"
    p.touch()
    assert _one_line_error(p) == f"slide '{p}' is empty (0 bytes); copy or export it again"


def test_directory(tmp_path: Path):
    assert "is a directory; give the slide file itself" in _one_line_error(tmp_path)


@pytest.mark.parametrize("path", ["", "  "])
def test_an_empty_path_says_so_not_that_the_folder_is_a_directory(path: str):
    """An empty slide path read as Path("."), the current folder: "slide '' is a directory".
    Every face that opens a slide (the TUI's Add-job dialog and viewer, `wsitui view`, a
    config's plan) gets one line saying the path is empty."""
    assert _one_line_error(path) == "slide path is empty; give the path of a slide file"


def test_truncated_svs(tmp_path: Path, sample_slide: Path):
    p = tmp_path / "cut.svs"
    data = sample_slide.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    msg = _one_line_error(p)
    assert msg.startswith(f"slide '{p}' is truncated or corrupt: ")
    assert msg.endswith("; copy or export the file again")


def test_last_bytes_missing(tmp_path: Path, sample_slide: Path):
    p = tmp_path / "short.svs"
    shutil.copy(sample_slide, p)
    with p.open("r+b") as f:
        f.truncate(p.stat().st_size - 10)
    assert _one_line_error(p).startswith(f"slide '{p}' is truncated or corrupt: ")


def test_tiff_check_names_tile_data_past_the_end(tmp_path: Path):
    # A tiled TIFF whose IFDs come first and whose tile data is cut short.
    p = tmp_path / "t.tif"
    data = np.random.default_rng(0).integers(0, 255, (512, 512, 3), np.uint8)
    tifffile.imwrite(p, data, tile=(256, 256), photometric="rgb", metadata=None)
    with tifffile.TiffFile(p) as tif:
        first_tile = int(min(tif.pages[0].dataoffsets))
        assert tif.pages[0].offset < first_tile  # IFD before data in this layout
    with p.open("r+b") as f:
        f.truncate(p.stat().st_size - 1000)
    msg = _one_line_error(p)
    assert "image data of page 0 ends at byte" in msg and "but the file has" in msg


def test_text_file(tmp_path: Path):
    p = tmp_path / "x.txt"
    p.write_text("hello\n")
    assert _one_line_error(p).startswith(
        f"'{p}' is not a slide image OpenSlide or Pillow can read; give an SVS, tiled TIFF"
    )


def test_unsupported_format(tmp_path: Path):
    p = tmp_path / "x.gif"
    Image.new("RGB", (10, 10)).save(p)
    assert _one_line_error(p).startswith(f"'{p}' is a GIF image, which wsitui does not read;")


def test_unsupported_pixel_mode(tmp_path: Path):
    p = tmp_path / "x16.png"
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(p)
    assert "has pixel mode I;16" in _one_line_error(p)


@pytest.mark.parametrize(("w", "h"), [(20_000, 20_000), (12_000, 10_000)])
def test_decompression_bomb_refused_before_decoding(tmp_path: Path, w: int, h: int):
    # 400 Mpx trips Pillow's own hard limit; 120 Mpx only ours. Both are refused from the header.
    p = _png_claiming(tmp_path / "bomb.png", w, h)
    assert _one_line_error(p) == (
        f"image '{p}' has {w * h:,} pixels, over the 100,000,000 limit for plain images; "
        "convert it to a tiled pyramidal TIFF"
    )


def test_plain_pixel_limit_is_configurable(tmp_path: Path):
    p = tmp_path / "x.png"
    Image.new("RGB", (100, 100)).save(p)
    assert "over the 5,000 limit" in _one_line_error(p, max_plain_pixels=5000)


def test_truncated_png(tmp_path: Path):
    p = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:5000])
    assert _one_line_error(p).startswith(f"image '{p}' is truncated or corrupt:")


def test_closed_reader(sample_slide: Path):
    r = open_slide(sample_slide)
    r.close()
    r.close()  # idempotent
    with pytest.raises(SlideError, match="is closed; open it again"):
        r.read_region((0, 0), 0, (8, 8))


def test_background_color_property():
    assert reader_openslide._parse_background({"openslide.background-color": "FFEEDD"}) == (
        255,
        238,
        221,
    )
    assert reader_openslide._parse_background({"openslide.background-color": "zz"}) == (
        255,
        255,
        255,
    )
    assert reader_openslide._parse_background({}) == (255, 255, 255)


def test_canvas_colours():
    from wsitui.slides.reader import canvas

    assert canvas(2, 3, (1, 2, 3)).tolist() == [[[1, 2, 3]] * 3] * 2
    assert (canvas(4, 5, (255, 255, 255)) == 255).all()


# ------------------------------------------------------------------ reduced reads in blocks


def _whole_then_resize(r, level: int, size: tuple[int, int]) -> np.ndarray:
    w, h = r.level_dimensions[level]
    whole = r.read_region((0, 0), level, (w, h))
    return np.asarray(Image.fromarray(whole).resize(size, Image.Resampling.BOX))


def _means(pixels: np.ndarray, k: int) -> np.ndarray:
    """Exact k x k means, rounded half up, in integers (numpy, independent of PIL)."""
    h, w = pixels.shape[:2]
    sums = pixels.reshape(h // k, k, w // k, k, 3).sum(axis=(1, 3), dtype=np.uint32)
    return ((2 * sums + k * k) // (2 * k * k)).astype(np.uint8)


def _box_means(r, level: int, k: int) -> np.ndarray:
    w, h = r.level_dimensions[level]
    return _means(r.read_region((0, 0), level, (w, h)), k)


@pytest.fixture(scope="module")
def single_level_means(single_level_slide: Path) -> np.ndarray:
    """16 x 16 means of the single-level slide's pixels, decoded by tifffile alone."""
    return _means(tifffile.imread(single_level_slide), 16)


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize(
    ("level", "size", "k"),
    [
        (1, (256, 192), 4),  # integer factor: exact box means whatever the blocks
        (0, (256, 192), 16),
        (1, (1024, 768), 1),  # 1x: a plain copy
        (0, (333, 250), 0),  # fractional factor: PIL's BOX resize, blocks share float edges
        (2, (300, 230), 0),  # slight upscale (level dims rounded below the target)
    ],
)
def test_read_level_scaled_is_the_whole_level_reduced_read_in_blocks(
    sample_slide: Path, monkeypatch, fast_path: bool, level: int, size: tuple[int, int], k: int
):
    with open_slide(sample_slide, fast_path=fast_path) as r:
        want = _box_means(r, level, k) if k else _whole_then_resize(r, level, size)
        monkeypatch.setattr(reader_base, "READ_BLOCK", 300)  # many blocks, ragged edges
        reads = record_reads(monkeypatch)
        got = r.read_level_scaled(level, size)
        lw, lh = r.level_dimensions[level]
    assert got.shape == (size[1], size[0], 3) and got.dtype == np.uint8
    assert len(reads) >= -(-lw // 300) * -(-lh // 300)
    assert max(w * h for w, h in reads) <= 300 * 300
    if k:
        np.testing.assert_array_equal(got, want)
    else:  # PIL's fixed-point rounding depends on the image width: +-1, rarely
        diff = np.abs(got.astype(int) - want)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_one_output_pixel_wider_than_a_block_goes_through_an_intermediate(
    sample_slide: Path, monkeypatch
):
    with open_slide(sample_slide) as r:
        want = _box_means(r, 0, 512)
        monkeypatch.setattr(reader_base, "READ_BLOCK", 300)  # 512 level px per output px
        reads = record_reads(monkeypatch)
        got = r.read_level_scaled(0, (8, 6))
    assert max(w * h for w, h in reads) <= 300 * 300
    assert np.abs(got.astype(int) - want).max() <= 1  # means of means of equal cells, rounded


@pytest.mark.parametrize("fast_path", [True, False])
def test_single_level_thumbnail_never_reads_the_whole_level(
    single_level_slide: Path, single_level_means: np.ndarray, monkeypatch, fast_path: bool
):
    with open_slide(single_level_slide, fast_path=fast_path) as r:
        assert r.level_count == 1 and r.vendor == "generic-tiff"
        assert r.mpp == pytest.approx(0.499 / SINGLE_LEVEL_SCALE)
        assert (0 in getattr(r, "fast_levels", ())) == fast_path
        w, h = r.dimensions
        reads = record_reads(monkeypatch)
        got = r.thumbnail(512)
    block = reader_base.READ_BLOCK**2
    assert w * h > 10 * block  # so the bound below means something
    assert len(reads) > 1 and max(rw * rh for rw, rh in reads) <= block
    assert sum(rw * rh for rw, rh in reads) == w * h  # each level-0 pixel read once
    np.testing.assert_array_equal(got, single_level_means)


def test_read_level_of_a_big_level_is_not_refused(single_level_slide: Path, monkeypatch):
    # Stands in for an 18432 x 15360 single-level slide (over MAX_REGION_PIXELS in one read).
    monkeypatch.setattr(reader_base, "MAX_REGION_PIXELS", reader_base.READ_BLOCK**2)
    with open_slide(single_level_slide) as r:
        w, h = r.dimensions
        with pytest.raises(ValueError, match=f"region size {w}x{h} is invalid"):
            r.read_region((0, 0), 0, (w, h))  # a caller asking for it at once is still refused
        level = r.read_level(0)
        np.testing.assert_array_equal(
            level[2000:2300, 4000:4300], r.read_region((4000, 2000), 0, (300, 300))
        )
    assert level.shape == (h, w, 3)


# ------------------------------------------------------------------ no-data tiles (0 bytes)


def test_missing_aperio_tiles_are_white_and_both_readers_agree(sample_slide: Path, tmp_path):
    p = tmp_path / "holes.svs"
    shutil.copy(sample_slide, p)
    zero_tile_bytecounts(p, 0, [0, 17])  # level-0 tiles (0, 0) and (1, 1) hold no data
    with open_slide(sample_slide) as orig, open_slide(p) as f, open_slide(p, fast_path=False) as s:
        for r in (f, s):
            out = r.read_region((0, 0), 0, (768, 768))
            assert (out[:256, :256] == 255).all() and (out[256:512, 256:512] == 255).all()
            want = orig.read_region((0, 0), 0, (768, 768))
            np.testing.assert_array_equal(out[:256, 256:], want[:256, 256:])  # the rest: as is
        # OpenSlide also marks the Aperio tiles above a hole missing at every coarser level and
        # paints them from level 0, so there the stored tiles must not be read by tifffile.
        assert f.fast_levels == (0,)
        for level in range(3):
            np.testing.assert_array_equal(f.read_level(level), s.read_level(level))
        assert (s.read_region((0, 0), 1, (64, 64)) == 255).all()


def test_missing_generic_tiff_tile_is_white(single_level_slide: Path, tmp_path: Path):
    p = tmp_path / "holes.tif"
    shutil.copy(single_level_slide, p)
    with tifffile.TiffFile(p) as tif:
        across = -(-tif.pages[0].imagewidth // tif.pages[0].tilewidth)
    zero_tile_bytecounts(p, 0, [across + 1])  # tile (1, 1)
    for fast_path in (True, False):
        with open_slide(p, fast_path=fast_path) as r:
            out = r.read_region((0, 0), 0, (768, 768))
        assert (out[256:512, 256:512] == 255).all()
        assert (out[:256] < 255).any(axis=2).all()  # tiles around it are there


# ----------------------------------------------------------------- plain images: lazy decode


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Names of the files Pillow decodes pixels of, from now on."""
    from PIL import ImageFile

    seen: list[str] = []
    real = ImageFile.ImageFile.load

    def load(self):
        if self.tile:  # pixel data still to decode (load() on a loaded image is a no-op)
            seen.append(Path(self.filename).name)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_opening_a_plain_image_decodes_nothing(tmp_path: Path, decodes: list[str], fmt: str):
    arr = np.random.default_rng(0).integers(0, 255, (1100, 1300, 3), dtype=np.uint8)
    p = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(arr).save(p, fmt)
    open_slide(p).close()  # a preflight check
    with open_slide(p) as r:
        assert r.level_dimensions == ((1300, 1100), (325, 275))
        assert decodes == []
        first = r.read_region((0, 0), 0, (64, 64))
        r.thumbnail(100)
        r.read_region((5, 5), 1, (10, 10))
    assert decodes == [p.name]  # once, on the first read
    with Image.open(p) as img:
        np.testing.assert_array_equal(first, np.asarray(img.convert("RGB"))[:64, :64])


def test_plain_image_is_decoded_once_by_concurrent_first_reads(tmp_path: Path, decodes: list[str]):
    arr = np.random.default_rng(2).integers(0, 255, (1500, 1200, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    spots = [(x, y) for x in range(0, 1200, 150) for y in range(0, 1500, 300)]
    with open_slide(tmp_path / "x.png") as r, ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda xy: r.read_region(xy, 0, (100, 100)), spots))
    assert decodes == ["x.png"]
    for (x, y), g in zip(spots, got, strict=True):
        np.testing.assert_array_equal(g, arr[y : y + 100, x : x + 100])


def test_corrupt_plain_pixels_are_a_slide_error_on_first_read(tmp_path: Path):
    # Valid chunk CRCs around a broken zlib stream: only decoding can tell.
    p = tmp_path / "bad.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)).save(p)
    b = bytearray(p.read_bytes())
    i = b.find(b"IDAT")
    n = struct.unpack(">I", b[i - 4 : i])[0]
    b[i + 104 : i + 204] = bytes(100)
    b[i + 4 + n : i + 8 + n] = struct.pack(">I", zlib.crc32(bytes(b[i : i + 4 + n])))
    p.write_bytes(bytes(b))
    with open_slide(p) as r, pytest.raises(SlideError) as e:
        r.read_region((0, 0), 0, (10, 10))
    assert str(e.value).startswith(f"image '{p}' is truncated or corrupt:")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "make",
    [
        # palette with a transparent entry, grey + alpha, RGBA: composited onto white
        lambda a: Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=8),
        lambda a: Image.fromarray(a).convert("LA"),
        lambda a: Image.fromarray(a).convert("RGBA"),
        lambda a: Image.fromarray(a).convert("L"),
    ],
)
def test_plain_modes_convert_in_strips_like_a_whole_convert(tmp_path: Path, monkeypatch, make):
    arr = np.random.default_rng(1).integers(0, 255, (50, 40, 3), dtype=np.uint8)
    img = make(arr)
    if img.mode == "P":
        img.info["transparency"] = 0
    elif img.mode in {"LA", "RGBA"}:
        alpha = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (50, 1))
        img.putalpha(Image.fromarray(alpha))
    p = tmp_path / "x.png"
    img.save(p, transparency=0) if img.mode == "P" else img.save(p)
    with Image.open(p) as ref:
        want = composite(np.asarray(ref.convert("RGBA")))
    monkeypatch.setattr(reader_pillow, "PLAIN_STRIP_ROWS", 7)  # strips that do not divide 50
    with open_slide(p) as r:
        got = r.read_region((0, 0), 0, (40, 50))
    np.testing.assert_array_equal(got, want)
    if img.mode != "L":
        assert (got == 255).all(axis=2).any()  # something was transparent and became white


# --------------------------------------------------------------------- not a regular file


def test_fifo_is_not_a_regular_file(tmp_path: Path):
    p = tmp_path / "pipe.svs"
    os.mkfifo(p)  # opening it to read would block forever
    assert _one_line_error(p) == f"slide '{p}' is not a regular file; give a slide file"


@pytest.mark.skipif(not Path("/dev/null").is_char_device(), reason="no /dev/null")
def test_character_device_is_not_a_regular_file():
    assert _one_line_error(Path("/dev/null")) == (
        "slide '/dev/null' is not a regular file; give a slide file"
    )


# ----------------------------------------------------------------- pixel budgets at open


def _empty_tiled_tiff(path: Path, side: int, tile: int) -> None:
    """A tiled TIFF declaring side x side px whose tiles are all missing: a tiny file."""
    n = math.ceil(side / tile) ** 2

    def tiles():
        for _ in range(n):
            yield b""

    tifffile.imwrite(
        path,
        tiles(),
        shape=(side, side, 3),
        dtype=np.uint8,
        tile=(tile, tile),
        photometric="rgb",
        compression="jpeg",
        metadata=None,
        bigtiff=True,
    )


@pytest.mark.parametrize(
    ("side", "tile", "message"),
    [
        # OpenSlide aborts the whole process (GLib cannot allocate) on the first one; the
        # second used to take 2.25 GB for one tile. Both are refused from the header.
        (2_000_000, 16384, "declares 2,000,000x2,000,000 px (page 0), over the"),
        (600_000, 4096, "declares 600,000x600,000 px (page 0), over the 34,359,738,368 px"),
        (16384, 12288, "has 12,288x12,288 px tiles (page 0), over the 16,777,216 px limit"),
    ],
)
def test_budgets_are_checked_from_the_header(tmp_path: Path, side: int, tile: int, message: str):
    p = tmp_path / "huge.tif"
    _empty_tiled_tiff(p, side, tile)
    assert p.stat().st_size < 5_000_000
    with pytest.raises(SlideError) as e:
        open_slide(p)
    msg = str(e.value)
    assert message in msg and f"'{p}'" in msg and "\n" not in msg


def test_a_level_is_read_band_by_band_to_the_same_pixels(fast: OpenSlideReader):
    for level, size in ((1, (256, 192)), (0, (1000, 750)), (0, (4096, 3072)), (0, (2, 1))):
        whole = fast.read_level_scaled(level, size)
        h = size[1]
        cuts = sorted({0, h // 3, h // 2, h})
        bands = [fast.read_level_scaled(level, size, rows=r) for r in itertools.pairwise(cuts)]
        np.testing.assert_array_equal(np.concatenate(bands), whole)
    with pytest.raises(ValueError, match="rows 5-3 are invalid"):
        fast.read_level_scaled(0, (100, 100), rows=(5, 3))
