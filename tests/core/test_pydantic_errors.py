"""first_problem: what every one-line validation message (engine, config, executors) reads."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from wsitui.core.pydantic_errors import Problem, first_problem


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
