import json
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from PIL import Image

from tests.slides.samples import SIZE, iou, record_reads
from wsitui.core.executor import JobCanceled, JobError
from wsitui.core.models import Job, JobSpec, JobState, JobType
from wsitui.jobs.tissue_mask import (
    ARCHIVE_FILE,
    MANIFEST_FILE,
    MASK_FILE,
    PREVIEW_FILE,
    TILES_FILE,
    TissueManifest,
    TissueMaskExecutor,
    TissueMaskParams,
    compute_tissue_mask,
    load_tile_grid,
    load_tissue_mask,
    tile_fractions,
)
from wsitui.slides import reader as reader_mod
from wsitui.slides.reader import open_slide
from wsitui.slides.sample import load_truth


class MemoryCheckpoint:
    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.saves = 0

    def load(self) -> dict[str, Any] | None:
        return self.state

    def save(self, state: Mapping[str, Any], tiles_done: int) -> None:
        self.state = dict(state)
        self.saves += 1


class FakeContext:
    def __init__(self, slide: Path, results_dir: Path, params: dict[str, Any] | None = None):
        self.job = Job(
            id="wf1.mask",
            key="mask",
            workflow_id="wf1",
            tenant="alice",
            job_type=JobType.TISSUE_MASK,
            slide=str(slide),
            branch="main",
            depends_on=(),
            params=params or {},
            state=JobState.RUNNING,
        )
        self.results_dir = results_dir
        self.checkpoint = MemoryCheckpoint()
        self.reports: list[tuple[int, int]] = []
        self.cancel = False

    def report(self, tiles_done: int, tiles_total: int) -> None:
        self.reports.append((tiles_done, tiles_total))

    def cancel_requested(self) -> bool:
        return self.cancel

    def check_cancel(self) -> None:
        if self.cancel:
            raise JobCanceled("canceled")


def run(ctx: FakeContext) -> None:
    anyio.run(TissueMaskExecutor().run, ctx)


@pytest.fixture(scope="module")
def finished(sample_slide: Path, tmp_path_factory: pytest.TempPathFactory) -> FakeContext:
    ctx = FakeContext(sample_slide, tmp_path_factory.mktemp("results"))
    run(ctx)
    return ctx


def test_outputs_exist_and_agree(finished: FakeContext):
    out = finished.results_dir
    for name in (MASK_FILE, TILES_FILE, PREVIEW_FILE, MANIFEST_FILE, ARCHIVE_FILE):
        assert (out / name).is_file(), name
    grid = load_tile_grid(out)
    assert (grid.cols, grid.rows, grid.tile_size, grid.level) == (8, 6, 512, 0)
    assert len(grid.tissue_fraction) == 6 and all(len(r) == 8 for r in grid.tissue_fraction)
    frac = np.array(grid.tissue_fraction)
    want = [(c, r) for r in range(6) for c in range(8) if frac[r, c] >= 0.05]
    assert grid.tissue_tiles == want and 0 < len(want) < 48
    tile_pngs = sorted(p.name for p in (out / "tiles").iterdir())
    assert tile_pngs == sorted(f"tile_{c}_{r}.png" for c, r in want)

    man = TissueManifest.model_validate_json((out / MANIFEST_FILE).read_text())
    assert man.job_id == "wf1.mask" and man.job_type == "TISSUE_MASK"
    assert man.grid.tiles_total == 48 and man.grid.tissue_tiles == len(want)
    assert man.slide.vendor == "aperio" and man.slide.dimensions == SIZE
    assert man.slide.level_downsamples == [1.0, 4.0, 16.0] and man.slide.mpp == pytest.approx(0.499)
    assert man.mask.downsample == (16.0, 16.0) and man.mask.shape == (192, 256)
    assert man.params == TissueMaskParams().as_dict()
    assert {"openslide", "tifffile", "numpy", "wsitui"} <= set(man.versions)
    assert man.timings["total_s"] > 0
    listed = {a.path for a in man.artifacts}
    assert listed == {MASK_FILE, TILES_FILE, PREVIEW_FILE, "tiles/"}
    tiles_art = next(a for a in man.artifacts if a.path == "tiles/")
    assert tiles_art.count == len(want)

    with zipfile.ZipFile(out / ARCHIVE_FILE) as zf:
        names = set(zf.namelist())
        assert {MASK_FILE, TILES_FILE, PREVIEW_FILE, MANIFEST_FILE} <= names
        assert {n for n in names if n.startswith("tiles/")} == {f"tiles/{n}" for n in tile_pngs}
        assert zf.read(TILES_FILE) == (out / TILES_FILE).read_bytes()
        assert zf.testzip() is None

    with Image.open(out / PREVIEW_FILE) as img:
        assert img.mode == "RGB" and max(img.size) == 1024 and img.size == (1024, 768)
        px = np.asarray(img)
    mask, ds = load_tissue_mask(out)
    assert ds == (16.0, 16.0)
    small = np.asarray(Image.fromarray(mask).resize((1024, 768), Image.Resampling.NEAREST))
    with open_slide(finished.job.slide) as r:
        thumb = r.thumbnail(1024).astype(int)
    np.testing.assert_array_equal(px[~small], thumb[~small])  # background untouched
    green_gain = (px[..., 1].astype(int) - px[..., 0]) - (thumb[..., 1] - thumb[..., 0])
    assert (green_gain[small] > 20).all()  # tissue tinted green


def test_progress_counts_grid_tiles(finished: FakeContext):
    reports = finished.reports
    assert reports[0] == (0, 48) and reports[-1] == (48, 48)
    assert all(t == 48 for _, t in reports)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)


def test_tile_masks_are_the_mask_under_each_tile(finished: FakeContext):
    out = finished.results_dir
    grid = load_tile_grid(out)
    mask, _ = load_tissue_mask(out)
    for c, r in grid.tissue_tiles:
        y0, y1, x0, x1 = grid.mask_box(c, r)
        assert (y1 - y0, x1 - x0) == (32, 32)  # 512 px tile / 16
        with Image.open(out / "tiles" / f"tile_{c}_{r}.png") as img:
            tile = np.asarray(img.convert("L")) > 0
        np.testing.assert_array_equal(tile, mask[y0:y1, x0:x1])
        assert tile.mean() == pytest.approx(grid.fraction(c, r), abs=1e-4)


def test_mask_matches_generator_truth(sample_slide: Path):
    truth = load_truth(sample_slide)
    with open_slide(sample_slide) as r:
        tm = compute_tissue_mask(r)
    assert tm.level == 2 and tm.mask.shape == truth.tissue.shape and not tm.mpp_assumed
    inter = (tm.mask & truth.tissue).sum()
    union = (tm.mask | truth.tissue).sum()
    assert inter / union >= 0.95


def test_fractions_are_exact_on_an_unaligned_grid(sample_slide: Path):
    # 300-px tiles at level 1 (4x): 1200 level-0 px = 75 mask px per tile, edges clipped.
    with open_slide(sample_slide) as r:
        tm = compute_tissue_mask(r)
    frac = tile_fractions(tm, SIZE, (1024, 768), 4.0, 300)
    assert frac.shape == (3, 4)
    full = np.repeat(np.repeat(tm.mask, 16, 0), 16, 1)  # the mask at level-0 resolution
    for row in range(3):
        for col in range(4):
            block = full[row * 1200 : (row + 1) * 1200, col * 1200 : (col + 1) * 1200]
            assert frac[row, col] == pytest.approx(block.mean(), abs=1e-9)


def test_retry_replaces_earlier_outputs(sample_slide: Path, tmp_path: Path):
    stale = tmp_path / "tiles" / "tile_99_99.png"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    run(FakeContext(sample_slide, tmp_path, {"tile_size": 1024, "min_tissue_fraction": 0.5}))
    assert not stale.exists()
    grid = load_tile_grid(tmp_path)
    assert (grid.cols, grid.rows) == (4, 3)
    assert all(grid.fraction(c, r) >= 0.5 for c, r in grid.tissue_tiles)


def test_level_param_grid(sample_slide: Path, tmp_path: Path):
    run(FakeContext(sample_slide, tmp_path, {"level": 1, "tile_size": 256}))
    grid = load_tile_grid(tmp_path)
    assert (grid.cols, grid.rows, grid.level_downsample) == (4, 3, 4.0)
    assert grid.tile_location(1, 2) == (1024, 2048)


def test_cancel_raises_job_canceled(sample_slide: Path, tmp_path: Path):
    ctx = FakeContext(sample_slide, tmp_path)
    ctx.cancel = True
    with pytest.raises(JobCanceled):
        run(ctx)
    assert not (tmp_path / MANIFEST_FILE).exists()


def test_cancel_during_tiles(sample_slide: Path, tmp_path: Path):
    ctx = FakeContext(sample_slide, tmp_path, {"tile_size": 64})  # 64x48 tiles

    def report(done: int, total: int) -> None:
        ctx.reports.append((done, total))
        if done >= total // 2:
            ctx.cancel = True

    ctx.report = report  # type: ignore[method-assign]
    with pytest.raises(JobCanceled):
        run(ctx)
    assert ctx.reports[-1][0] < 64 * 48
    assert not (tmp_path / MANIFEST_FILE).exists()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tile": 512}, "unknown param 'tile' for TISSUE_MASK; use one of: tile_size, level"),
        ({"tile_size": "512"}, "param 'tile_size' must be an integer from 16 to 16384, got '512'"),
        ({"tile_size": True}, "param 'tile_size' must be an integer"),
        ({"tile_size": 8}, "param 'tile_size' must be an integer from 16 to 16384, got 8"),
        ({"level": -1}, "param 'level' must be an integer from 0 to 32, got -1"),
        ({"min_tissue_fraction": 1.5}, "param 'min_tissue_fraction' must be a number from 0 to 1"),
        ({"target_mpp": 0}, "param 'target_mpp' must be a number above 0 up to 100, got 0"),
        ({"min_hole_um2": float("nan")}, "param 'min_hole_um2' must be a number"),
        ({"assumed_mpp": None}, "param 'assumed_mpp' must be a number above 0"),
    ],
)
def test_validate_rejects_bad_params(sample_slide: Path, params: dict, message: str):
    spec = JobSpec(id="m", type=JobType.TISSUE_MASK, slide=str(sample_slide), params=params)
    with pytest.raises(ValueError) as e:
        TissueMaskExecutor().validate(spec, sample_slide)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_validate_accepts_good_params_without_opening_the_slide(tmp_path: Path):
    junk = tmp_path / "not-yet-checked.svs"
    junk.write_text("not a slide")  # validate must not open it
    params = {"tile_size": 256, "level": 1, "min_tissue_fraction": 0, "target_mpp": 16}
    spec = JobSpec(id="m", type=JobType.TISSUE_MASK, slide=str(junk), params=params)
    TissueMaskExecutor().validate(spec, junk)


def test_validate_missing_slide(tmp_path: Path):
    p = tmp_path / "gone.svs"
    spec = JobSpec(id="m", type=JobType.TISSUE_MASK, slide=str(p))
    with pytest.raises(ValueError, match=r"slide '.*gone\.svs' does not exist; check the path"):
        TissueMaskExecutor().validate(spec, p)


def test_bad_slide_at_run_is_a_one_line_job_error(tmp_path: Path):
    p = tmp_path / "x.txt"
    p.write_text("hello")
    with pytest.raises(JobError) as e:
        run(FakeContext(p, tmp_path / "out"))
    assert str(e.value).startswith(f"'{p}' is not a slide image") and "\n" not in str(e.value)


def test_level_out_of_range_is_a_job_error(sample_slide: Path, tmp_path: Path):
    with pytest.raises(JobError, match=r"param 'level' is 5 but slide '.*' has levels 0-2"):
        run(FakeContext(sample_slide, tmp_path, {"level": 5}))


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
    ys, xs = np.nonzero(tm.mask)
    dx, dy = tm.downsample
    assert math.isclose(xs.min() * dx, 400, abs_tol=2 * dx)
    assert math.isclose((ys.max() + 1) * dy, 900, abs_tol=2 * dy)
    with open_slide(tmp_path / "blank.png") as r:
        blank = compute_tissue_mask(r)
    assert blank.threshold is None and not blank.mask.any()


def test_otsu_matches_skimage_and_handles_one_level():
    from skimage.filters import threshold_otsu

    from wsitui.jobs.tissue_mask import otsu

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
    block = reader_mod.READ_BLOCK**2
    monkeypatch.setattr(reader_mod, "MAX_REGION_PIXELS", block)
    reads = record_reads(monkeypatch)
    run(FakeContext(single_level_slide, tmp_path))

    with open_slide(single_level_slide) as r:
        level0 = r.dimensions[0] * r.dimensions[1]
    assert level0 > 10 * block  # so the bounds below mean something
    assert reads and max(w * h for w, h in reads) <= block
    # One pass over level 0 in all (the preview reuses the mask's image, no second pass).
    assert level0 <= sum(w * h for w, h in reads) < 1.2 * level0

    man = TissueManifest.model_validate_json((tmp_path / MANIFEST_FILE).read_text())
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
    ctx = FakeContext(single_level_slide, tmp_path)
    checks = 0

    def check_cancel() -> None:
        nonlocal checks
        checks += 1
        if checks == 3:  # job start, block 1, block 2: cancel here
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
    assert 2 <= blocks() <= 2 + reader_mod.SCALED_READ_WORKERS < total
    assert not (tmp_path / MANIFEST_FILE).exists()
