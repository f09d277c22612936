"""A job param of the wrong type says the fix, as a config value of the wrong type does.

`params = { tile_size = 256.5 }` (or nan, a date, a table) said only "params.tile_size: Input
should be a valid integer"; `[scheduler] max_workers = 1.5` said the same and how to fix it.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from wsitui.core.validation import params_error
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
