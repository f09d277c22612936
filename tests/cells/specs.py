"""What the SEGMENT_CELLS tests and benchmarks run: the workflow (a tissue mask, then cells on
it) and, for tests that drive a backend's tile pipeline directly, the tile plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wsitui.core.records import JobSpec, WorkflowSpec
from wsitui.jobs.segment_cells.params import SegmentCellsParams
from wsitui.jobs.segment_cells.plan import plan_tiles


async def shipped_cells_results(data: Path, slide: Path, **params: Any) -> Path:
    """Run a tissue mask, then SEGMENT_CELLS with the shipped model (512-px tiles, `params` over
    that) on `slide` in a fresh engine at `data`; the cells job's results folder."""
    import anyio

    from wsitui.core.engine import Engine
    from wsitui.core.records import JobState
    from wsitui.jobs.segment_cells.executor import SegmentCellsExecutor
    from wsitui.jobs.tissue_mask.executor import TissueMaskExecutor

    async with Engine(data, [TissueMaskExecutor(), SegmentCellsExecutor()]) as engine:
        w = engine.submit("t", mask_and_cells(slide, model="shipped", tile_size=512, **params))
        with anyio.fail_after(300):
            await engine.wait_idle()
        job = engine._jobs[w.jobs[1].id]
        assert job.state is JobState.SUCCEEDED, job.error
        return engine.results_dir(job)


def mask_and_cells(slide: Path, name: str = "w", **params: Any) -> WorkflowSpec:
    return WorkflowSpec(
        name=name,
        jobs=(
            JobSpec(id="mask", type="TISSUE_MASK", slide=str(slide)),
            JobSpec(
                id="cells",
                type="SEGMENT_CELLS",
                slide=str(slide),
                depends_on=("mask",),
                params=params,
            ),
        ),
    )


def every_tile(reader: Any, model: Any, params: SegmentCellsParams) -> Any:
    """Every 256-px tile of the slide (no tissue mask), at the model's pixel size."""
    return plan_tiles(
        reader,
        slide_mpp=reader.mpp or params.assumed_mpp,
        model_px=model.pixel_size,
        tile_size=256,
        max_nucleus_um=params.max_nucleus_um,
        tissue=None,
    )


def real_tumour_slide(tmp_path: Path) -> Path:
    """Real tumour H&E (tiatoolbox's target image, one of the real check images, wrapped as a
    slide: it exercises the model layer's nuclear check and classical fill, never tunes them),
    where the shipped network outlines bits of cytoplasm and stroma and leaves big dark nuclei
    packed in nests bare."""
    from tests.cells.images import write_rgb_slide
    from wsitui.models.real_images import load_real

    return write_rgb_slide(tmp_path / "he_target.svs", load_real("he_target"), 0.5)


async def shipped_manifest(data: Path, slide: Path, **params: Any) -> dict[str, Any]:
    """The manifest of `shipped_cells_results` (a fresh engine at `data`)."""
    import json

    results = await shipped_cells_results(data, slide, **params)
    return json.loads((results / "manifest.json").read_text())  # type: ignore[no-any-return]
