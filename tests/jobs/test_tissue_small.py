"""Small images (issue 24): a 125 x 75 µm crop of tissue is not thrown away by a slide-sized
size threshold, and an empty mask is a warning in the manifest and the job's stage."""

from pathlib import Path

import numpy as np
import tifffile

from tests.jobs.fakes import FakeContext
from tests.jobs.fakes import run as run_executor
from wsitui.jobs.common.manifest import MANIFEST_FILE
from wsitui.jobs.common.upstream import load_tissue_mask
from wsitui.jobs.tissue_mask.executor import TissueMaskExecutor
from wsitui.jobs.tissue_mask.outputs import TissueManifest
from wsitui.slides.sample import SamplePlan

MPP_SMALL = 0.25


def write_tiff(path: Path, pixels: np.ndarray, mpp: float) -> Path:
    tifffile.imwrite(
        path,
        pixels,
        tile=(256, 256),
        photometric="rgb",
        metadata=None,
        resolution=(1e4 / mpp, 1e4 / mpp),
        resolutionunit="CENTIMETER",
    )
    return path


def tissue_crop() -> np.ndarray:
    """500 x 300 px of generated tissue at 0.25 µm/px (its 0.499 µm/px pixels, doubled)."""
    plan = SamplePlan(4096, 3072, seed=0)
    ds = plan.field_ds
    inside = np.argwhere(plan.truth_tissue)
    # A spot with tissue all around: the crop is tissue edge to edge.
    for fy, fx in inside[len(inside) // 2 :]:
        if plan.truth_tissue[fy - 12 : fy + 12, fx - 12 : fx + 12].all():
            break
    region = plan.render_region(int(fx * ds) - 125, int(fy * ds) - 75, 250, 150)
    return np.repeat(np.repeat(region, 2, axis=0), 2, axis=1)


def run_job(slide: Path, out: Path) -> tuple[FakeContext, TissueManifest]:
    ctx = FakeContext(TissueMaskExecutor(), slide, out)
    run_executor(TissueMaskExecutor(), ctx)
    return ctx, TissueManifest.model_validate_json((out / MANIFEST_FILE).read_text())


def test_a_small_image_of_tissue_keeps_its_tissue(tmp_path: Path):
    slide = write_tiff(tmp_path / "small.tif", tissue_crop(), MPP_SMALL)
    _, man = run_job(slide, tmp_path / "out")
    mask, _ = load_tissue_mask(tmp_path / "out")
    assert mask.mean() >= 0.9, mask.astype(int)
    assert man.grid.tissue_tiles == man.grid.tiles_total
    assert man.warnings == []


def test_an_empty_mask_is_a_warning_in_the_manifest_and_the_stage(tmp_path: Path):
    glass = np.full((300, 500, 3), 243, np.uint8)
    slide = write_tiff(tmp_path / "glass.tif", glass, MPP_SMALL)
    ctx, man = run_job(slide, tmp_path / "out")
    assert man.grid.tissue_tiles == 0
    assert len(man.warnings) == 1 and man.warnings[0].startswith("no tissue found")
    assert man.warnings[0] in ctx.stages


def test_a_fragment_slides_mask_is_finer_and_its_consumers_use_its_pixel_size(tmp_path: Path):
    # Small pieces' edges are re-cut at ~2 µm/px: tissue_mask.png is 4x finer per axis than
    # the 8 µm mask, the manifest and tiles.json say so, and SEGMENT_CELLS' tile plan (which
    # reads the mask with its recorded downsample) keeps every tile a true piece lies under.
    from wsitui.jobs.segment_cells.plan import plan_tiles
    from wsitui.slides.fragments import load_fragment_truth, write_fragment_slide
    from wsitui.slides.reader import open_slide
    from wsitui.slides.style import STYLES

    drawn = write_fragment_slide(
        tmp_path / "f.svs", size=(2048, 1536), seed=2, style=STYLES["soft"]
    )
    assert drawn.fragments > 5
    path = tmp_path / "f.svs"
    _, manifest = run_job(path, tmp_path / "out")
    mask, ds = load_tissue_mask(tmp_path / "out")
    assert ds == (4.0, 4.0) and manifest.mask.downsample == ds
    assert mask.shape == (1536 // 4, 2048 // 4) == manifest.mask.shape
    assert abs(manifest.mask.mpp - 4 * 0.499) < 0.01
    truth, tds = load_fragment_truth(path)
    with open_slide(path) as reader:
        plan = plan_tiles(
            reader,
            slide_mpp=0.499,
            model_px=0.5,
            tile_size=128,
            max_nucleus_um=12.0,
            tissue=(mask, ds),
        )
        everything = plan_tiles(
            reader, slide_mpp=0.499, model_px=0.5, tile_size=128, max_nucleus_um=12.0, tissue=None
        )
    kept = {(t.col, t.row) for t in plan.tiles}
    assert 0 < len(kept) < len(everything.tiles)
    scale, size = plan.scale, plan.geometry.tile_size

    def tiles_of(points: np.ndarray, px: float) -> list[tuple[int, int]]:
        ys, xs = points
        cols = ((xs + 0.5) * px / scale // size).astype(int)
        rows = ((ys + 0.5) * px / scale // size).astype(int)
        return list(zip(cols.tolist(), rows.tolist(), strict=True))

    # Every mask px is in a segmented tile (a consumer taking the mask for 8 µm/px would put
    # it 4x too far out), and so is nearly all of the true tissue.
    assert set(tiles_of(np.nonzero(mask), ds[0])) <= kept
    in_kept = [t in kept for t in tiles_of(np.nonzero(truth), tds)]
    assert np.mean(in_kept) >= 0.97
