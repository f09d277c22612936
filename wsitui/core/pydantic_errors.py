"""A pydantic ValidationError as the pieces of a one-line message: its first problem.

pydantic's own `str(error)` is a multi-line report; every place that shows a validation error
(job params at submission, a TOML config, an executor's own params) says one line naming where
and what instead, and reads it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True, slots=True)
class Problem:
    """The first problem of a ValidationError."""

    loc: tuple[int | str, ...]  # where, e.g. ('workflows', 0, 'jobs', 1, 'params')
    msg: str  # what, without pydantic's "Value error, " prefix on a validator's own message
    type: str  # pydantic's error type, e.g. 'extra_forbidden', 'missing'
    input: object  # the value refused
    more: int  # how many other problems the error holds

    @property
    def dotted(self) -> str:
        """`loc` joined with dots ('tile_size', 'a.b.0'); '' for the model itself."""
        return ".".join(str(p) for p in self.loc)


def first_problem(exc: ValidationError) -> Problem:
    err = exc.errors()[0]
    return Problem(
        loc=tuple(err.get("loc", ())),
        msg=str(err.get("msg", "invalid")).removeprefix("Value error, "),
        type=str(err.get("type", "")),
        input=err.get("input"),
        more=exc.error_count() - 1,
    )
