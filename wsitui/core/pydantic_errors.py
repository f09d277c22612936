"""A pydantic ValidationError as the pieces of a one-line message: its first problem.

pydantic's own `str(error)` is a multi-line report; every place that shows a validation error
(job params at submission, a TOML config, an executor's own params) says one line naming where
and what instead, and reads it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

HINTS = {  # pydantic's error type -> the fix, for the problems pydantic only describes
    "extra_forbidden": "remove it or check its spelling",
    "missing": "add it",
    "string_too_long": "shorten it",
    "string_too_short": "give it a value",
    "string_type": 'give it as a quoted string, e.g. "text"',
    "int_parsing": "give a whole number, without quotes",
    "int_type": "give a whole number, without quotes",
    "int_from_float": "give a whole number",
    "float_parsing": "give a number, without quotes",
    "float_type": "give a number, without quotes",
    "finite_number": "give a number such as 5.0 (nan and inf are not numbers here)",
    "bool_parsing": "use true or false, without quotes",
    "bool_type": "use true or false, without quotes",
    "list_type": 'give a list, e.g. ["a", "b"]',
    "too_long": "list fewer",
    "dict_type": "give a table, e.g. { key = 1 }",
    "model_type": "give a table, e.g. [section] or { key = 1 }",
    "path_type": 'give it as a quoted string, e.g. "data"',
}


MESSAGES = {  # pydantic's wording where it names our classes or Python's types
    "path_type": "Input should be a path",  # was "not a valid path for <class 'pathlib.Path'>"
    "model_type": "Input should be a table",
    "dict_type": "Input should be a table",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """The first problem of a ValidationError."""

    loc: tuple[int | str, ...]  # where, e.g. ('workflows', 0, 'jobs', 1, 'params')
    msg: str  # what, without pydantic's "Value error, " prefix on a validator's own message
    type: str  # pydantic's error type, e.g. 'extra_forbidden', 'missing'
    input: object  # the value refused
    more: int  # how many other problems the error holds

    @property
    def described(self) -> str:
        """What is wrong and, where pydantic only describes it, the fix: 'Input should be a
        valid integer (give a whole number, without quotes)'."""
        msg = MESSAGES.get(self.type, self.msg)
        hint = HINTS.get(self.type)
        return f"{msg} ({hint})" if hint else msg

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
