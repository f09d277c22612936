import io
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

from tests.slides.samples import SIZE
from wsitui.slides import reader as reader_mod
from wsitui.slides.errors import SlideError
from wsitui.slides.reader import (
    OpenSlideReader,
    PillowReader,
    composite,
    open_slide,
    shared_openslide_cache,
)


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
        assert (out[:, :10] < 255).any() or (out[:, :10] > 200).all()


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
        pass
    assert len(seen) == 2 and seen[0] is seen[1] is shared_openslide_cache()


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
    assert reader_mod._parse_background({"openslide.background-color": "FFEEDD"}) == (
        255,
        238,
        221,
    )
    assert reader_mod._parse_background({"openslide.background-color": "zz"}) == (255, 255, 255)
    assert reader_mod._parse_background({}) == (255, 255, 255)


def test_canvas_colours():
    from wsitui.slides.reader import canvas

    assert canvas(2, 3, (1, 2, 3)).tolist() == [[[1, 2, 3]] * 3] * 2
    assert (canvas(4, 5, (255, 255, 255)) == 255).all()
