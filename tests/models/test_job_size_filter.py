"""Held-out and real-image measures see what a job writes: no instance under the job's
`min_area_um2` (a SEGMENT_CELLS job never writes one, so a measure that counted them would
score specks no user sees, and the default must not drop true nuclei the models outline)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.draw import disk

from wsitui.jobs.segment_cells.params import SegmentCellsParams
from wsitui.models import evaluate


class _Painted:
    """A stand-in model (the filter is the point, not a network): each painted blob is one
    instance."""

    def predict(self, batch: np.ndarray, postprocess: object = None) -> np.ndarray:
        return np.stack([ndimage.label(tile[..., 0] > 0)[0] for tile in batch])


def test_the_measures_use_the_jobs_default_size_filter():
    default = SegmentCellsParams.model_fields["min_area_um2"].default
    assert default == evaluate.JOB_MIN_AREA_UM2
    assert default / evaluate.MODEL_PX_UM**2 == evaluate.JOB_MIN_AREA_PX


def test_the_measures_frame_a_slide_as_a_jobs_tiles_do():
    """A model whose levels follow the tile (the classical fallback) draws what the tile shows:
    the held-out slides are read as a job reads them at its defaults (core, context, grid)."""
    from wsitui.jobs.common.grid import GridGeometry
    from wsitui.jobs.segment_cells.plan import ALIGN, overlap_for

    fields = SegmentCellsParams.model_fields
    core = fields["tile_size"].default
    need = overlap_for(fields["max_nucleus_um"].default, evaluate.MODEL_PX_UM)
    input_size = -(-(core + 2 * need) // ALIGN) * ALIGN  # as plan_tiles pads it
    assert (core, (input_size - core) // 2) == (evaluate.JOB_CORE, evaluate.JOB_CONTEXT)
    for w, h in ((1024, 1024), (2048, 1500), (600, 2000), (300, 300), (576, 1153)):
        grid = GridGeometry(core, 0, 1.0, (w, h), (input_size - core) // 2)
        want = [
            (grid.tile(c, r).core, grid.tile(c, r).read)
            for r in range(grid.rows)
            for c in range(grid.cols)
        ]
        assert evaluate.job_tiles(h, w) == want, (w, h)


class _Recorder:
    """Records what each tile shows: its shape and the position its top-left pixel encodes."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[int, ...], int, int, bool]] = []

    def predict(self, batch: np.ndarray, postprocess: object = None) -> np.ndarray:
        t = batch[0]
        padded = bool((t[-1, -1] == evaluate.GLASS).all())
        self.seen.append((t.shape, int(t[0, 0, 0]), int(t[0, 0, 1]), padded))
        return np.zeros(batch.shape[:3], np.int32)


def test_a_slide_is_segmented_tile_by_tile_as_the_jobs_reads_are():
    h, w = 1100, 1300
    yy, xx = np.mgrid[:h, :w]
    rgb = np.stack([xx % 251, yy % 251, np.zeros_like(xx)], axis=-1).astype(np.uint8)
    rec = _Recorder()
    evaluate.segment_as_job(rec, rgb)
    size = evaluate.JOB_CORE + 2 * evaluate.JOB_CONTEXT
    want = [
        ((size, size, 3), rx % 251, ry % 251, rw < size or rh < size)
        for _, (rx, ry, rw, rh) in evaluate.job_tiles(h, w)
    ]
    assert rec.seen == want


def test_a_small_nucleus_is_kept_and_a_speck_dropped_as_a_job_would():
    labels = np.zeros((200, 200), np.int32)
    rr, cc = disk((50, 50), 2.2, shape=labels.shape)  # 3 µm² at 0.5 µm/px: a small nucleus
    labels[rr, cc] = 1
    assert evaluate.JOB_MIN_AREA_PX <= rr.size < 24  # kept now, dropped by the old 6 µm²
    labels[120, 120:122] = 2  # a 2-px speck (0.5 µm²)
    rr, cc = disk((150, 60), 6, shape=labels.shape)  # an ordinary nucleus
    labels[rr, cc] = 3
    rgb = np.zeros((200, 200, 3), np.uint8)
    rgb[labels > 0] = 255
    out = evaluate.segment_image(_Painted(), rgb, tile=128, overlap=32)
    areas = sorted(np.unique(out[out > 0], return_counts=True)[1].tolist())
    assert areas == sorted([int((labels == 1).sum()), int((labels == 3).sum())])
    every = evaluate.segment_image(_Painted(), rgb, tile=128, overlap=32, min_area_px=0)
    assert np.unique(every[every > 0]).size == 3
