"""first_problem: what every one-line validation message (engine, config, executors) reads."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from wsitui.core.pydantic_errors import Problem, first_problem
from wsitui.core.validation import params_error
from wsitui.jobs.segment_cells.params import SegmentCellsParams


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = 1

    @field_validator("size")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("size must be >= 1")
        return v


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Inner] = []
    name: str = ""


def problem_of(data: dict) -> Problem:
    with pytest.raises(ValidationError) as err:
        Outer.model_validate(data)
    return first_problem(err.value)


def test_a_validators_own_message_comes_without_pydantics_prefix():
    p = problem_of({"items": [{"size": 1}, {"size": 0}]})
    assert (p.loc, p.dotted, p.msg, p.input, p.more) == (
        ("items", 1, "size"),
        "items.1.size",
        "size must be >= 1",
        0,
        0,
    )


def test_the_first_problem_and_how_many_more():
    p = problem_of({"items": [{"colour": "red"}], "name": 3, "extra": 1})
    assert (p.dotted, p.type, p.msg) == (
        "items.0.colour",
        "extra_forbidden",
        "Extra inputs are not permitted",
    )
    assert p.more == 2


class Unions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    batch: int | Literal["auto"] = "auto"
    inner: Inner | int = 1
    sizes: list[int | float] = []
    Upper: int = 0


@pytest.mark.parametrize(
    ("data", "dotted", "msg", "more"),
    [
        ({"batch": "x"}, "batch", "Input should be a valid integer or 'auto'", 0),
        ({"batch": 2.5, "Upper": "x"}, "batch", "Input should be a valid integer or 'auto'", 1),
        ({"sizes": [1, "q"]}, "sizes.1", "Input should be a valid integer or a valid number", 0),
        ({"inner": {"size": 0}}, "inner.size", "size must be >= 1", 0),
        ({"Upper": "x"}, "Upper", "Input should be a valid integer", 0),
        ({"Other": 1, "Extra": 2}, "Other", "Extra inputs are not permitted", 1),
    ],
    ids=["literal", "literal_and_more", "in_list", "model_branch", "camel_field", "extra_keys"],
)
def test_a_unions_branch_tags_stay_out_of_the_location(data, dotted, msg, more):
    """Before: `batch_size = "x"` on `int | Literal["auto"]` read `params.batch_size.int`
    (pydantic tags each branch it tried); the field is named alone, with what each branch
    takes, and the branch errors count as one problem."""
    with pytest.raises(ValidationError) as err:
        Unions.model_validate(data)
    p = first_problem(err.value)
    assert (p.dotted, p.msg, p.more) == (dotted, msg, more)


def test_a_job_params_union_error_names_the_param_alone():
    with pytest.raises(ValidationError) as err:
        SegmentCellsParams.model_validate({"batch_size": "x"})
    line = params_error(err.value, SegmentCellsParams)
    assert line == "params.batch_size: Input should be a valid integer or 'auto'", line
