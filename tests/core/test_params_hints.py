"""A job param of the wrong type says the fix, as a config value of the wrong type does.

`params = { tile_size = 256.5 }` (or nan, a date, a table) said only "params.tile_size: Input
should be a valid integer"; `[scheduler] max_workers = 1.5` said the same and how to fix it.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from wsitui.core.validation import params_error
from wsitui.jobs.measure_cells.params import MeasureCellsParams
from wsitui.jobs.segment_cells.params import SegmentCellsParams
from wsitui.jobs.tissue_mask.params import TissueMaskParams


@pytest.mark.parametrize(
    ("params", "want"),
    [
        ({"tile_size": 256.5}, "params.tile_size: Input should be a valid integer (give a whole"),
        ({"tile_size": float("nan")}, "params.tile_size: Input should be a valid integer (give"),
        ({"tile_size": {"x": 1}}, "params.tile_size: Input should be a valid integer (give a"),
        (
            {"min_tissue_fraction": float("inf")},
            "params.min_tissue_fraction: Input should be a finite number (give a number such as",
        ),
        ({"archive": "yes"}, "params.archive: Input should be a valid boolean (use true or false"),
    ],
    ids=["float", "nan", "table", "inf", "bool"],
)
def test_a_param_of_the_wrong_type_says_how_to_write_it(params: dict[str, object], want: str):
    with pytest.raises(ValidationError) as exc:
        TissueMaskParams.model_validate(params)
    line = params_error(exc.value, TissueMaskParams)
    assert line.startswith(want), line
    assert "\n" not in line


@pytest.mark.parametrize(
    ("model", "params", "want"),
    [
        (SegmentCellsParams, {"min_area_um2": True}, "params.min_area_um2: Input should be a"),
        (SegmentCellsParams, {"memory_gb": True}, "params.memory_gb: Input should be a valid num"),
        (SegmentCellsParams, {"tile_size": "512"}, "params.tile_size: Input should be a valid int"),
        (SegmentCellsParams, {"tile_labels": 1}, "params.tile_labels: Input should be a valid b"),
        (MeasureCellsParams, {"expansion_um": True}, "params.expansion_um: Input should be a val"),
        (MeasureCellsParams, {"workers": True}, "params.workers: Input should be a valid integer"),
        (MeasureCellsParams, {"background": "200"}, "params.background: Input should be a valid"),
        (MeasureCellsParams, {"tile_size": "512"}, "params.tile_size: Input should be a valid in"),
    ],
    ids=["seg_area_bool", "seg_memory_bool", "seg_tile_str", "seg_labels_int", "meas_ring_bool",
         "meas_workers_bool", "meas_background_str", "meas_tile_str"],
)  # fmt: skip
def test_cell_job_params_are_as_strict_as_the_tissue_masks(
    model: type[BaseModel], params: dict[str, object], want: str
):
    """Before: SEGMENT_CELLS `min_area_um2 = true` ran with 1.0 µm², `tile_labels = 1` wrote
    label PNGs, MEASURE_CELLS `expansion_um = true` measured a 1 µm ring and `workers = true`
    used one worker, all without a word; TISSUE_MASK refused the same."""
    with pytest.raises(ValidationError) as exc:
        model.model_validate(params)
    assert params_error(exc.value, model).startswith(want)


def test_numbers_of_the_right_kind_and_toml_arrays_still_pass():
    seg = SegmentCellsParams.model_validate(
        {"memory_gb": 4, "batch_size": "auto", "tile_size": 512}
    )
    assert (seg.memory_gb, seg.batch_size, seg.tile_size) == (4.0, "auto", 512)
    vectors = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]]  # TOML arrays are lists
    meas = MeasureCellsParams.model_validate({"expansion_um": 3, "stain_vectors": vectors})
    assert meas.expansion_um == 3.0 and meas.stain_vectors == tuple(map(tuple, vectors))
