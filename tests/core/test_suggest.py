"""The "did you mean" of a mistyped name: a job type written as a user would mistype it."""

from __future__ import annotations

import pytest

from wsitui.core.suggest import did_you_mean

TYPES = ("TISSUE_MASK", "SEGMENT_CELLS", "MEASURE_CELLS")


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("tissue_mask", "TISSUE_MASK"),  # lower case, as TOML keys usually are
        ("tissue-mask", "TISSUE_MASK"),
        ("Segment Cells", "SEGMENT_CELLS"),
        ("SEGMENT", "SEGMENT_CELLS"),  # the start of one type only
        ("TISUE_MASK", "TISSUE_MASK"),  # a letter missing
        ("MEASURE_CELL", "MEASURE_CELLS"),
    ],
)
def test_a_near_miss_names_the_type_it_meant(name: str, meant: str) -> None:
    assert did_you_mean(name, TYPES) == f" (did you mean {meant}?)"


@pytest.mark.parametrize("name", ["COUNT", "FOO", "", "CELLS", "TISSUE_MASK"])
def test_nothing_near_or_the_name_itself_suggests_nothing(name: str) -> None:
    # "CELLS" ends two types and starts none; an exact name needs no hint.
    assert did_you_mean(name, TYPES) == ""
