import json
import math
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image
from pydantic import ValidationError

from tests.jobs.fakes import FakeContext, MemoryCheckpoint
from tests.jobs.fakes import run as run_executor
from tests.slides.samples import SIZE, iou, record_reads, with_stated_mpp
from wsitui.core.executor import JobCanceled, JobError
from wsitui.core.records import JobSpec
from wsitui.jobs.common import grid as grid_mod
from wsitui.jobs.common.grid import TILES_FILE, GridGeometry, TileGrid, mask_fractions
from wsitui.jobs.common.manifest import MANIFEST_FILE
from wsitui.jobs.common.upstream import MASK_FILE, load_tile_grid, load_tissue_mask
from wsitui.jobs.tissue_mask import mask as tissue_mod
from wsitui.jobs.tissue_mask.executor import TissueMaskExecutor
from wsitui.jobs.tissue_mask.mask import compute_tissue_mask
from wsitui.jobs.tissue_mask.outputs import (
    ARCHIVE_FILE,
    GEOJSON_FILE,
    PREVIEW_FILE,
    TissueManifest,
)
from wsitui.jobs.tissue_mask.params import TissueMaskParams
from wsitui.slides.reader import base as reader_base
from wsitui.slides.reader import open_slide
from wsitui.slides.sample import load_truth

DEFAULT_OUTPUTS = {MASK_FILE, TILES_FILE, PREVIEW_FILE, GEOJSON_FILE, MANIFEST_FILE}


def make_ctx(slide: Path, out: Path, params: dict | None = None, **kw) -> FakeContext:
    return FakeContext(TissueMaskExecutor(), slide, out, params, **kw)


def run(ctx: FakeContext) -> None:
    run_executor(TissueMaskExecutor(), ctx)


def manifest_of(out: Path) -> TissueManifest:
    return TissueManifest.model_validate_json((out / MANIFEST_FILE).read_text())


@pytest.fixture(scope="module")
def finished(sample_slide: Path, tmp_path_factory: pytest.TempPathFactory) -> FakeContext:
    ctx = make_ctx(sample_slide, tmp_path_factory.mktemp("results"))
    run(ctx)
    return ctx


def test_default_outputs_exist_and_agree(finished: FakeContext):
    out = finished.results_dir
    # Per-tile PNGs and the zip are opt-in: by default only what people use.
    assert {p.name for p in out.iterdir() if p.is_file()} == DEFAULT_OUTPUTS
    assert not (out / "tiles").exists() and not (out / ARCHIVE_FILE).exists()
    grid = load_tile_grid(out)
    assert (grid.cols, grid.rows, grid.tile_size, grid.level) == (8, 6, 512, 0)
    frac = np.array(grid.tissue_fraction)
    want = [(c, r) for r in range(6) for c in range(8) if frac[r, c] >= 0.05]
    assert grid.tissue_tiles == want and 0 < len(want) < 48

    man = manifest_of(out)
    assert man.job_id == "wf1.mask" and man.job_type == "TISSUE_MASK"
    assert man.grid.tiles_total == 48 and man.grid.tissue_tiles == len(want)
    assert man.slide.vendor == "aperio" and man.slide.dimensions == SIZE
    assert man.slide.level_downsamples == [1.0, 4.0, 16.0] and man.slide.mpp == pytest.approx(0.499)
    assert man.mask.downsample == (16.0, 16.0) and man.mask.shape == (192, 256)
    assert man.params == TissueMaskParams().model_dump() and man.warnings == []
    assert man.archive is None and man.regions >= 1
    assert {"openslide", "tifffile", "numpy", "shapely", "wsitui"} <= set(man.versions)
    assert {a.path for a in man.artifacts} == DEFAULT_OUTPUTS - {MANIFEST_FILE}

    with Image.open(out / PREVIEW_FILE) as img:
        assert img.mode == "RGB" and img.size == (1024, 768)
        px = np.asarray(img)
    mask, ds = load_tissue_mask(out)
    assert ds == (16.0, 16.0)
    small = np.asarray(Image.fromarray(mask).resize((1024, 768), Image.Resampling.NEAREST))
    with open_slide(finished.job.slide) as r:
        thumb = r.thumbnail(1024).astype(int)
    # Background untouched: the slide at preview size (from the mask's own image, which is
    # the level the thumbnail reads: equal up to resampling rounding).
    assert np.abs(px[~small].astype(int) - thumb[~small]).max() <= 1
    green_gain = (px[..., 1].astype(int) - px[..., 0]) - (thumb[..., 1] - thumb[..., 0])
    assert (green_gain[small] > 20).all()  # tissue tinted green
    assert finished.stages == ["reading level 2", "masking", "writing outputs"]


def test_geojson_is_the_mask_as_qupath_annotations(finished: FakeContext):
    out = finished.results_dir
    text = (out / GEOJSON_FILE).read_text()
    # Strict JSON: Python's parser would accept NaN/Infinity, QuPath's would not.
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert data["type"] == "FeatureCollection" and data["features"]
    ids = [f["id"] for f in data["features"]]
    assert len(set(ids)) == len(ids) and all(uuid.UUID(i).version == 4 for i in ids)
    for f in data["features"]:
        assert f["properties"]["objectType"] == "annotation"
        cls = f["properties"]["classification"]
        assert cls["name"] == "Tissue" and len(cls["color"]) == 3
    shapes = [shapely.geometry.shape(f["geometry"]) for f in data["features"]]
    assert all(s.is_valid and s.geom_type == "Polygon" for s in shapes)
    assert any(len(s.interiors) > 0 for s in shapes)  # the sample's holes are kept
    # Level-0 px, (0, 0) at the top-left corner: mask pixel (i, j) is the 16-px square at
    # (16j, 16i), so the polygons contain exactly the centres of the tissue pixels.
    mask, (dx, dy) = load_tissue_mask(out)
    ys, xs = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    union = shapely.union_all(shapes)
    inside = shapely.contains_xy(union, (xs + 0.5) * dx, (ys + 0.5) * dy)
    np.testing.assert_array_equal(inside, mask)
    assert union.area == pytest.approx(mask.sum() * dx * dy)
    assert manifest_of(out).regions == len(shapes)


def test_per_tile_masks_and_archive_on_request(sample_slide: Path, tmp_path: Path):
    run(make_ctx(sample_slide, tmp_path, {"tile_masks": True, "archive": True}))
    grid = load_tile_grid(tmp_path)
    mask, _ = load_tissue_mask(tmp_path)
    pngs = sorted(p.name for p in (tmp_path / "tiles").iterdir())
    assert pngs == sorted(f"tile_{c}_{r}.png" for c, r in grid.tissue_tiles)
    for c, r in grid.tissue_tiles:
        y0, y1, x0, x1 = grid.mask_box(c, r)
        with Image.open(tmp_path / "tiles" / f"tile_{c}_{r}.png") as img:
            tile = np.asarray(img.convert("L")) > 0
        np.testing.assert_array_equal(tile, mask[y0:y1, x0:x1])
        assert tile.mean() == pytest.approx(grid.fraction(c, r), abs=1e-4)
    man = manifest_of(tmp_path)
    assert man.archive == ARCHIVE_FILE
    assert next(a for a in man.artifacts if a.path == "tiles/").count == len(pngs)
    with zipfile.ZipFile(tmp_path / ARCHIVE_FILE) as zf:
        names = set(zf.namelist())
        assert names >= DEFAULT_OUTPUTS
        assert {n for n in names if n.startswith("tiles/")} == {f"tiles/{n}" for n in pngs}
        assert zf.read(TILES_FILE) == (tmp_path / TILES_FILE).read_bytes()
        assert zf.testzip() is None


def test_progress_counts_grid_tiles_and_never_goes_down(finished: FakeContext):
    reports = finished.reports
    assert reports[0] == (0, 48) and reports[-1] == (48, 48)
    assert all(t == 48 for _, t in reports)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)


def test_mask_matches_generator_truth(sample_slide: Path):
    truth = load_truth(sample_slide)
    with open_slide(sample_slide) as r:
        tm = compute_tissue_mask(r)
    assert tm.level == 2 and tm.mask.shape == truth.tissue.shape and not tm.mpp_assumed
    assert iou(tm.mask, truth.tissue) >= 0.95


def test_fractions_are_exact_on_an_unaligned_grid(sample_slide: Path):
    # 300-px tiles at level 1 (4x): 1200 level-0 px = 75 mask px per tile, edges clipped.
    with open_slide(sample_slide) as r:
        tm = compute_tissue_mask(r)
    frac = mask_fractions(tm.mask, tm.downsample, SIZE, GridGeometry(300, 1, 4.0, (1024, 768)))
    assert frac.shape == (3, 4)
    full = np.repeat(np.repeat(tm.mask, 16, 0), 16, 1)  # the mask at level-0 resolution
    for row in range(3):
        for col in range(4):
            block = full[row * 1200 : (row + 1) * 1200, col * 1200 : (col + 1) * 1200]
            assert frac[row, col] == pytest.approx(block.mean(), abs=1e-9)


@pytest.mark.parametrize("threshold", [0.05, 0.1, 0.3, 0.7])
def test_a_tile_exactly_at_the_threshold_is_kept(threshold: float):
    # 100 x 100 px tiles on a 1:1 mask; tile (0, 0) has exactly `threshold` tissue, tile (1, 0)
    # one pixel less. Float sums must not drop the first (0.3 is 0.29999... in binary).
    mask = np.zeros((100, 200), bool)
    n = round(threshold * 10_000)
    mask.ravel()[:0] = False
    mask[:, :100].flat[:n] = True
    mask[:, 100:].flat[: n - 1] = True
    geometry = GridGeometry(100, 0, 1.0, (200, 100))
    grid = TileGrid.build(geometry, (200, 100), mask, (1.0, 1.0), threshold)
    assert grid.fraction(0, 0) == threshold and grid.is_tissue(0, 0)
    assert not grid.is_tissue(1, 0)
    assert grid.tissue_tiles == [(0, 0)]


def test_grid_cores_partition_the_level_and_reads_add_the_overlap():
    g = GridGeometry(
        tile_size=256, level=1, level_downsample=4.0, level_dimensions=(1000, 600), overlap=32
    )
    assert (g.cols, g.rows) == (4, 3)
    covered = np.zeros((600, 1000), np.int32)
    for row in range(g.rows):
        for col in range(g.cols):
            t = g.tile(col, row)
            x, y, w, h = t.core
            covered[y : y + h, x : x + w] += 1
            rx, ry, rw, rh = t.read
            assert rx == max(0, x - 32) and ry == max(0, y - 32)
            assert rx + rw == min(1000, x + w + 32) and ry + rh == min(600, y + h + 32)
            assert t.location == (rx * 4, ry * 4) and t.level0_core == (x * 4, y * 4, w * 4, h * 4)
    assert (covered == 1).all()
    last = g.tile(3, 2)
    assert last.core == (768, 512, 232, 88) and last.read == (736, 480, 264, 120)
    # A point of the read region is in exactly one tile's core.
    inside = last.in_core(np.array([31, 32, 263]), np.array([40, 40, 119]))
    assert inside.tolist() == [False, True, True]


def test_retry_replaces_earlier_outputs(sample_slide: Path, tmp_path: Path):
    stale = tmp_path / "tiles" / "tile_99_99.png"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    (tmp_path / ARCHIVE_FILE).write_bytes(b"old zip")
    run(make_ctx(sample_slide, tmp_path, {"tile_size": 1024, "min_tissue_fraction": 0.5}))
    assert not stale.exists() and not (tmp_path / ARCHIVE_FILE).exists()
    grid = load_tile_grid(tmp_path)
    assert (grid.cols, grid.rows) == (4, 3)
    assert all(grid.fraction(c, r) >= 0.5 for c, r in grid.tissue_tiles)


def test_level_param_grid(sample_slide: Path, tmp_path: Path):
    run(make_ctx(sample_slide, tmp_path, {"level": 1, "tile_size": 256}))
    grid = load_tile_grid(tmp_path)
    assert (grid.cols, grid.rows, grid.level_downsample) == (4, 3, 4.0)
    assert grid.tile_location(1, 2) == (1024, 2048)


def test_cancel_raises_job_canceled(sample_slide: Path, tmp_path: Path):
    ctx = make_ctx(sample_slide, tmp_path)
    ctx.cancel = True
    with pytest.raises(JobCanceled):
        run(ctx)
    assert not (tmp_path / MANIFEST_FILE).exists()


def test_a_resumed_job_continues_from_its_shards(
    single_level_slide: Path, tmp_path: Path, monkeypatch
):
    # The single-level slide is read in several bands (each a shard and a checkpoint).
    monkeypatch.setattr(tissue_mod, "BAND_SOURCE_PIXELS", 4 * 2**20)
    with open_slide(single_level_slide) as r:
        plan = tissue_mod.plan_mask(r, TissueMaskParams())
        whole = compute_tissue_mask(r).mask
    assert len(plan.bands) >= 4
    checkpoint = MemoryCheckpoint()
    first = make_ctx(single_level_slide, tmp_path, checkpoint=checkpoint)

    def stop_halfway(done: int, total: int) -> None:
        if done >= total // 2:
            first.cancel = True

    first.on_report = stop_halfway
    with pytest.raises(JobCanceled):
        run(first)
    assert not (tmp_path / MANIFEST_FILE).exists()
    stopped_at = first.reports[-1][0]
    bands_done = checkpoint.state["bands_done"]
    assert 0 < stopped_at < 16 * 12 and checkpoint.tiles_done == stopped_at
    assert 0 < bands_done < len(plan.bands)

    reads = record_reads(monkeypatch)
    second = make_ctx(single_level_slide, tmp_path, checkpoint=checkpoint)
    run(second)
    assert second.restarts == []
    done = [d for d, _ in second.reports]
    assert done[0] == stopped_at and done == sorted(done) and done[-1] == 16 * 12
    # Only the bands not read before were read again.
    band_rows = sum(r1 - r0 for r0, r1 in plan.bands[bands_done:])
    read_px = sum(w * h for w, h in reads if w * h > 256 * 256)
    with open_slide(single_level_slide) as r:
        w0, h0 = r.dimensions
    assert read_px <= 1.05 * w0 * h0 * band_rows / plan.size[1]
    mask, _ = load_tissue_mask(tmp_path)
    np.testing.assert_array_equal(mask, whole)


def test_lost_shards_restart_progress_honestly(single_level_slide: Path, tmp_path: Path):
    checkpoint = MemoryCheckpoint()
    run(make_ctx(single_level_slide, tmp_path, checkpoint=checkpoint))
    bands = checkpoint.state["bands_done"]
    assert bands > 1 and len(list((tmp_path / "shards").glob("band_*.npy"))) == bands
    for shard in (tmp_path / "shards").glob("band_*.npy"):
        shard.write_bytes(b"torn")
    again = make_ctx(single_level_slide, tmp_path, checkpoint=checkpoint)
    run(again)
    assert len(again.restarts) == 1 and "unreadable" in again.restarts[0]
    assert again.reports[0] == (0, 16 * 12) and (tmp_path / MANIFEST_FILE).is_file()


def test_a_cheap_single_band_read_keeps_no_shard(sample_slide: Path, tmp_path: Path):
    # The pyramidal sample's mask level is read in one band: a shard would cost a write on
    # every run and save nothing on resume.
    checkpoint = MemoryCheckpoint()
    run(make_ctx(sample_slide, tmp_path, checkpoint=checkpoint))
    assert list((tmp_path / "shards").glob("band_*")) == []
    # ... so the checkpoint claims no band it has not kept (issue 15 item 9).
    assert checkpoint.state is None and checkpoint.tiles_done == 0


def test_a_resumed_single_band_job_keeps_its_progress_honest(sample_slide: Path, tmp_path: Path):
    # Resumed (e.g. killed while writing outputs): no "saved band(s) missing" restart, and the
    # first progress it publishes is the checkpoint's, which it then only raises (issue 15 #9).
    checkpoint = MemoryCheckpoint()
    run(make_ctx(sample_slide, tmp_path, checkpoint=checkpoint))
    again = make_ctx(sample_slide, tmp_path, checkpoint=checkpoint)
    run(again)
    assert again.restarts == []
    done = [d for d, _ in again.reports]
    assert done[0] == checkpoint.tiles_done and done == sorted(done)
    assert again.reports[-1][0] == again.reports[-1][1] > 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tile": 512}, "unknown param 'tile' for TISSUE_MASK; use one of: tile_size, level"),
        ({"tile_size": "512"}, "param 'tile_size': input should be a valid integer, got '512'"),
        ({"tile_size": True}, "param 'tile_size': input should be a valid integer"),
        ({"tile_size": 8}, "param 'tile_size': input should be greater than or equal to 16"),
        ({"level": -1}, "param 'level': input should be greater than or equal to 0, got -1"),
        ({"min_tissue_fraction": 1.5}, "param 'min_tissue_fraction': input should be less than"),
        (
            {"target_mpp": 0.0001},
            "param 'target_mpp': input should be greater than or equal to 0.5",
        ),
        ({"min_hole_um2": float("nan")}, "param 'min_hole_um2': input should be a finite number"),
        ({"assumed_mpp": None}, "param 'assumed_mpp': input should be a valid number"),
        ({"archive": "yes"}, "param 'archive': input should be a valid boolean"),
    ],
)
def test_bad_params_are_refused_in_one_line(params: dict, message: str):
    with pytest.raises(ValueError) as e:
        TissueMaskParams.parse(params)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    with pytest.raises(ValidationError):  # what the engine runs at submission
        TissueMaskExecutor.params_model.model_validate(params)


def test_validate_accepts_good_params_without_opening_the_slide(tmp_path: Path):
    junk = tmp_path / "not-yet-checked.svs"
    junk.write_text("not a slide")  # validate must not open it
    raw = {"tile_size": 256, "level": 1, "min_tissue_fraction": 0, "target_mpp": 16}
    spec = JobSpec(id="m", type="TISSUE_MASK", slide=str(junk), params=raw)
    ex = TissueMaskExecutor()
    ex.validate(spec, junk, ex.params_model.model_validate(raw), ())


def test_validate_missing_slide(tmp_path: Path):
    p = tmp_path / "gone.svs"
    spec = JobSpec(id="m", type="TISSUE_MASK", slide=str(p))
    with pytest.raises(ValueError, match=r"slide '.*gone\.svs' does not exist; check the path"):
        TissueMaskExecutor().validate(spec, p, TissueMaskParams(), ())


def test_bad_slide_at_run_is_a_one_line_job_error(tmp_path: Path):
    p = tmp_path / "x.txt"
    p.write_text("hello")
    with pytest.raises(JobError) as e:
        run(make_ctx(p, tmp_path / "out"))
    assert str(e.value).startswith(f"'{p}' is not a slide image") and "\n" not in str(e.value)


def test_level_out_of_range_is_a_job_error(sample_slide: Path, tmp_path: Path):
    with pytest.raises(JobError, match=r"param 'level' is 5 but slide '.*' has levels 0-2"):
        run(make_ctx(sample_slide, tmp_path, {"level": 5}))


@pytest.mark.parametrize("stated", ["1e-09", "1000000000"])
def test_an_implausible_pixel_size_falls_back_loudly(
    stated: str, sample_slide: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
):
    slide = with_stated_mpp(tmp_path_factory, sample_slide, stated)
    ctx = make_ctx(slide, tmp_path)
    run(ctx)
    man = manifest_of(tmp_path)
    assert man.slide.mpp == pytest.approx(float(stated))  # what the file says, kept
    assert man.mask.mpp_assumed and man.mask.mpp == pytest.approx(0.5 * 16)
    assert len(man.warnings) == 1 and f"slide says {float(stated):g} µm/px" in man.warnings[0]
    assert ctx.stages[0] == f"reading level 2; slide MPP {float(stated):g} implausible, assumed 0.5"
    assert len(ctx.stages[0]) <= 80  # what faces show of a stage
    # The mask is as good as with the right pixel size, not a 1x1 image or level 0.
    mask, _ = load_tissue_mask(tmp_path)
    assert iou(mask, load_truth(sample_slide).tissue) >= 0.95
    assert 0.15 < man.mask.tissue_fraction < 0.7


def test_a_mask_over_its_pixel_budget_is_refused_before_reading(
    sample_slide: Path, tmp_path: Path, monkeypatch
):
    # 0.5 µm/px on the 4096 x 3072 sample would be level 0 whole: 12.6 Mpx (a 40k x 30k slide
    # would be 1.2 Gpx). The limit is lowered so the small sample stands in for a big slide.
    monkeypatch.setattr(tissue_mod, "MAX_MASK_PIXELS", 10_000_000)
    reads = record_reads(monkeypatch)
    with pytest.raises(JobError) as e:
        run(make_ctx(sample_slide, tmp_path, {"target_mpp": 0.5}))
    msg = str(e.value)
    assert "a mask at 0.5 µm/px would be 4,096x3,072 px, over the 10,000,000 px limit" in msg
    assert "raise target_mpp" in msg and "\n" not in msg
    assert [r for r in reads if r[0] * r[1] > 256 * 256] == []


def test_a_grid_over_its_tile_budget_is_refused(sample_slide: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(grid_mod, "MAX_GRID_TILES", 1000)
    with pytest.raises(JobError) as e:
        run(make_ctx(sample_slide, tmp_path, {"tile_size": 64}))
    assert "has 3,072 tiles, over the 1,000 tile limit; use a larger tile_size" in str(e.value)


def test_loader_errors(tmp_path: Path):
    with pytest.raises(JobError, match=r"tiles\.json' does not exist; run the TISSUE_MASK job"):
        load_tile_grid(tmp_path)
    (tmp_path / TILES_FILE).write_text(json.dumps({"format": "x"}))
    with pytest.raises(JobError, match="is unreadable") as e:
        load_tile_grid(tmp_path)
    assert "\n" not in str(e.value)


def test_plain_image_without_mpp(tmp_path: Path):
    # A white PNG with a dark square: no mpp (assumed), tissue found, one-class images handled.
    img = np.full((1200, 1600, 3), 245, np.uint8)
    img[300:900, 400:1000] = (200, 120, 170)
    Image.fromarray(img).save(tmp_path / "x.png")
    Image.fromarray(np.full((600, 800, 3), 245, np.uint8)).save(tmp_path / "blank.png")
    with open_slide(tmp_path / "x.png") as r:
        tm = compute_tissue_mask(r)
    assert tm.mpp_assumed and tm.threshold is not None
    assert tm.warnings == ("slide has no pixel size; assumed 0.5 µm/px",)
    ys, xs = np.nonzero(tm.mask)
    dx, dy = tm.downsample
    assert math.isclose(xs.min() * dx, 400, abs_tol=2 * dx)
    assert math.isclose((ys.max() + 1) * dy, 900, abs_tol=2 * dy)
    with open_slide(tmp_path / "blank.png") as r:
        blank = compute_tissue_mask(r)
    assert blank.threshold is None and not blank.mask.any()


def test_otsu_matches_skimage_and_handles_one_level():
    from skimage.filters import threshold_otsu

    from wsitui.jobs.tissue_mask.mask import otsu

    rng = np.random.default_rng(0)
    img = np.concatenate([rng.normal(170, 12, 5000), rng.normal(238, 4, 15000)])
    img = np.clip(img, 0, 255).astype(np.uint8)
    t, dark, bright = otsu(np.bincount(img, minlength=256))
    assert t == int(threshold_otsu(img))
    assert dark == pytest.approx(img[img <= t].mean()) and bright == pytest.approx(
        img[img > t].mean()
    )
    assert otsu(np.bincount(np.full(10, 245), minlength=256)) == (245, 245.0, 245.0)


def test_single_level_tiff_mask_is_built_block_by_block(
    single_level_slide: Path, sample_slide: Path, tmp_path: Path, monkeypatch
):
    # A region cap as small as one block stands in for a level too big to read at once (an
    # 18432 x 15360 single-level TIFF used to fail with "ValueError: region size ... invalid").
    block = reader_base.READ_BLOCK**2
    monkeypatch.setattr(reader_base, "MAX_REGION_PIXELS", block)
    reads = record_reads(monkeypatch)
    run(make_ctx(single_level_slide, tmp_path))

    with open_slide(single_level_slide) as r:
        level0 = r.dimensions[0] * r.dimensions[1]
    assert level0 > 10 * block  # so the bounds below mean something
    assert reads and max(w * h for w, h in reads) <= block
    # One pass over level 0 in all (the preview reuses the mask's image, no second pass).
    assert level0 <= sum(w * h for w, h in reads) < 1.2 * level0

    man = manifest_of(tmp_path)
    assert (man.slide.level_count, man.mask.level_read, man.mask.mpp_assumed) == (1, 0, False)
    mask, _ = load_tissue_mask(tmp_path)
    truth = load_truth(sample_slide)
    with open_slide(sample_slide) as r:
        pyramidal = compute_tissue_mask(r).mask
    assert abs(mask.shape[0] - 192) <= 1 and abs(mask.shape[1] - 256) <= 1  # ~8 µm/px
    assert iou(mask, truth.tissue) >= 0.95
    assert iou(mask, pyramidal) >= 0.97

    with Image.open(tmp_path / PREVIEW_FILE) as img:
        assert img.size == (1024, 768)
        px = np.asarray(img).astype(int)
    small = np.asarray(Image.fromarray(mask).resize((1024, 768), Image.Resampling.NEAREST))
    green = px[..., 1] - px[..., 0]
    assert green[small].mean() > green[~small].mean() + 20  # tissue tinted, slide underneath


def test_cancel_stops_a_long_mask_read(single_level_slide: Path, tmp_path: Path, monkeypatch):
    # On a single-level slide the mask read decodes every tile; a cancel must not wait for it.
    ctx = make_ctx(single_level_slide, tmp_path)
    checks = 0

    def check_cancel() -> None:
        nonlocal checks
        checks += 1
        if checks == 4:  # job start, band start, block 1, block 2: cancel here
            raise JobCanceled("canceled")

    ctx.check_cancel = check_cancel  # type: ignore[method-assign]
    reads = record_reads(monkeypatch)
    with open_slide(single_level_slide) as r:
        compute_tissue_mask(r)  # uncanceled, for the number of blocks in the whole level

    def blocks() -> int:
        return sum(w * h > 256 * 256 for w, h in reads)  # not the tile checked at open

    total = blocks()
    reads.clear()
    with pytest.raises(JobCanceled):
        run(ctx)
    assert 2 <= blocks() <= 2 + reader_base.SCALED_READ_WORKERS < total
    assert not (tmp_path / MANIFEST_FILE).exists()
