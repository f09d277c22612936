import math
from pathlib import Path

import numpy as np
import openslide
import pytest
from scipy.spatial import cKDTree

from tests.slides.samples import SIZE
from wsitui.slides.errors import SlideError
from wsitui.slides.reader import open_slide
from wsitui.slides.synthetic.generator import (
    A_MAX,
    A_MIN,
    B_MIN,
    CELL,
    TILE,
    SamplePlan,
    parse_size,
    rasterize_nuclei,
)
from wsitui.slides.synthetic.truth import load_truth, truth_path_for
from wsitui.slides.synthetic.writer import level_dimensions, write_sample_slide

SMALL = (1024, 1024)


def test_openslide_sees_an_aperio_slide(sample_slide: Path):
    s = openslide.OpenSlide(sample_slide)
    try:
        assert s.properties["openslide.vendor"] == "aperio"
        assert s.level_dimensions == ((4096, 3072), (1024, 768), (256, 192))
        assert s.level_downsamples == (1.0, 4.0, 16.0)
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.499)
        assert float(s.properties["openslide.mpp-y"]) == pytest.approx(0.499)
        assert s.properties["openslide.objective-power"] == "20"
        assert set(s.associated_images) == {"label", "macro", "thumbnail"}
        assert s.associated_images["thumbnail"].size == (1024, 768)
        assert s.associated_images["label"].size == (400, 400)
    finally:
        s.close()


def test_level_dimensions_rule():
    assert level_dimensions(40000, 30000) == [
        (40000, 30000),
        (10000, 7500),
        (2500, 1875),
        (625, 468),
    ]
    assert level_dimensions(1024, 1024) == [(1024, 1024), (256, 256)]


def test_truth_sidecar_describes_the_slide(sample_slide: Path):
    truth = load_truth(sample_slide)
    assert truth_path_for(sample_slide).is_file()
    assert (truth.width, truth.height, truth.seed) == (*SIZE, 0)
    assert truth.tissue_downsample == 16
    assert truth.tissue.shape == (SIZE[1] // 16, SIZE[0] // 16)
    assert 0.15 < truth.tissue.mean() < 0.7  # glass and tissue both present
    assert len(truth.nuclei) > 500
    a, b = truth.nuclei[:, 2], truth.nuclei[:, 3]
    assert a.min() >= A_MIN and a.max() <= A_MAX and b.min() >= B_MIN and (b <= a).all()


def test_nuclei_lie_in_tissue_and_do_not_touch(sample_slide: Path):
    truth = load_truth(sample_slide)
    plan = SamplePlan(*SIZE, seed=0)
    x, y, a = truth.nuclei[:, 0], truth.nuclei[:, 1], truth.nuclei[:, 2]
    assert (plan.tissue_at_points(x, y) > 0).all()
    # The truth grid agrees at the centres, bar a few right at the tissue edge.
    ds = truth.tissue_downsample
    on_grid = truth.tissue[(y // ds).astype(int), (x // ds).astype(int)]
    assert on_grid.mean() > 0.99
    pairs = cKDTree(truth.nuclei[:, :2]).query_pairs(2 * A_MAX + 2, output_type="ndarray")
    d = np.hypot(*(truth.nuclei[pairs[:, 0], :2] - truth.nuclei[pairs[:, 1], :2]).T)
    assert (d >= a[pairs[:, 0]] + a[pairs[:, 1]]).all()


def test_truth_nuclei_are_reproduced_from_any_cell_range(sample_slide: Path):
    truth = load_truth(sample_slide)
    plan = SamplePlan(*SIZE, seed=0)
    cx0, cx1, cy0, cy1 = 9, 14, 7, 11
    params, _, _ = plan.nuclei_in_cells(cx0, cx1, cy0, cy1)
    cx = (truth.nuclei[:, 0] // CELL).astype(int)
    cy = (truth.nuclei[:, 1] // CELL).astype(int)
    sel = (cx >= cx0) & (cx < cx1) & (cy >= cy0) & (cy < cy1)
    assert sel.sum() > 20
    got = params[np.lexsort((params[:, 0], params[:, 1]))]
    want = truth.nuclei[sel]
    want = want[np.lexsort((want[:, 0], want[:, 1]))]
    np.testing.assert_array_equal(got, want)


def test_tiles_render_independently_and_match_the_slide(sample_slide: Path):
    plan = SamplePlan(*SIZE, seed=0)
    # A tile alone equals the tile rendered with the writer's row-wide nuclei.
    tx, ty = 7, 6
    p, shade, _ = plan.nuclei_in_cells(0, plan.cells_x, 2 * ty - 1, 2 * ty + 3)
    np.testing.assert_array_equal(plan.render_tile(tx, ty), plan.render_tile(tx, ty, (p, shade)))
    # A region across four tile corners, rendered from scratch, is the slide before JPEG.
    x0, y0 = 7 * TILE - 100, 6 * TILE - 96
    want = plan.render_region(x0, y0, 304, 256)
    other = SamplePlan(*SIZE, seed=1).render_region(x0, y0, 304, 256)
    with open_slide(sample_slide) as r:
        got = r.read_region((x0, y0), 0, (304, 256))

    def blocks(a: np.ndarray) -> np.ndarray:  # JPEG keeps 4x4 means, not per-pixel noise
        return a.reshape(64, 4, 76, 4, 3).mean(axis=(1, 3))

    assert np.abs(blocks(got) - blocks(want)).mean() < 2.0
    assert np.abs(blocks(got) - blocks(other)).mean() > 10.0


def test_drawn_nuclei_are_purple_where_the_truth_says(sample_slide: Path):
    truth = load_truth(sample_slide)
    x0, y0, w, h = 1800, 1300, 512, 512
    labels = rasterize_nuclei(truth.nuclei, x0, y0, w, h)
    assert (labels > 0).sum() > 1000
    with open_slide(sample_slide) as r:
        img = r.read_region((x0, y0), 0, (w, h)).astype(int)
    # Nuclei are dark purple (green channel low); the rest is pink tissue or glass.
    inner = labels > 0
    assert img[inner][:, 1].mean() < 90
    assert img[~inner][:, 1].mean() > 140


def test_same_seed_same_file_different_seed_different_pixels(tmp_path: Path):
    a = write_sample_slide(tmp_path / "a.svs", size=SMALL, seed=3)
    b = write_sample_slide(tmp_path / "b.svs", size=SMALL, seed=3)
    c = write_sample_slide(tmp_path / "c.svs", size=SMALL, seed=4)
    assert a.path.read_bytes() == b.path.read_bytes()
    with open_slide(a.path) as ra, open_slide(b.path) as rb, open_slide(c.path) as rc:
        pa, pb, pc = (r.read_region((0, 0), 0, SMALL) for r in (ra, rb, rc))
    np.testing.assert_array_equal(pa, pb)
    assert np.abs(pa.astype(int) - pc).mean() > 5
    ta, tc = load_truth(a.path), load_truth(c.path)
    assert not np.array_equal(ta.tissue, tc.tissue)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.svs",
        "a.truth.npz",
        "b.svs",
        "b.truth.npz",
        "c.svs",
        "c.truth.npz",
    ]  # no scratch files left behind


def test_progress_is_reported_per_tile_row(tmp_path: Path):
    seen: list[tuple[int, int]] = []
    write_sample_slide(tmp_path / "p.svs", size=SMALL, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(4 * (i + 1), 16) for i in range(4)]


@pytest.mark.parametrize(
    ("text", "size"), [("4096x3072", (4096, 3072)), (" 2048 X 1024 ", (2048, 1024))]
)
def test_parse_size(text: str, size: tuple[int, int]):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("40k", "size '40k' is not WxH: give width and height in pixels, e.g. 4096x3072"),
        ("4096", "is not WxH"),
        ("100x100", "size 100x100 is out of range: each side must be 1,024-200,000 px"),
        ("4096x300000", "out of range"),
        (
            "200000x200000",
            "size 200000x200000 is 40,000,000,000 px, over the 1,600,000,000 px limit",
        ),
    ],
)
def test_parse_size_errors(text: str, message: str):
    with pytest.raises(ValueError, match=message) as e:
        parse_size(text)
    assert "\n" not in str(e.value)


def test_write_errors_are_one_line(tmp_path: Path):
    with pytest.raises(SlideError, match=r"directory '.*nowhere' does not exist") as e:
        write_sample_slide(tmp_path / "nowhere" / "x.svs", size=SMALL)
    assert "\n" not in str(e.value)
    with pytest.raises(SlideError, match="is a directory"):
        write_sample_slide(tmp_path, size=SMALL)
    with pytest.raises(ValueError, match="seed -1 is out of range"):
        write_sample_slide(tmp_path / "x.svs", size=SMALL, seed=-1)


def test_missing_truth_is_a_slide_error(tmp_path: Path):
    with pytest.raises(SlideError, match=r"ground truth '.*x.truth.npz' does not exist"):
        load_truth(tmp_path / "x.svs")


def test_field_upsampling_matches_point_evaluation():
    plan = SamplePlan(*SMALL, seed=1)
    region = plan.fields_at_region(100, 200, 64, 48)[0]
    ys, xs = np.mgrid[200:248, 100:164] + 0.5
    pts = plan.tissue_at_points(xs.ravel(), ys.ravel()).reshape(48, 64)
    np.testing.assert_allclose(region, pts, atol=1e-5)
    assert math.isclose(plan.field_ds, 16)
