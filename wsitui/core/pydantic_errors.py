"""A pydantic ValidationError as the pieces of a one-line message: its first problem.

pydantic's own `str(error)` is a multi-line report; every place that shows a validation error
(job params at submission, a TOML config, an executor's own params) says one line naming where
and what instead, and reads it from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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


# How pydantic tags a union's branches in an error's loc: `int | Literal["auto"]` refused "x"
# as ('batch_size', 'int') and ('batch_size', "literal['auto']"), and the line read
# `params.batch_size.int`. A model branch is tagged with its class name.
_TAG = re.compile(
    r"\A(int|float|str|bool|bytes|none|decimal|date|datetime|time|timedelta|uuid|path|any"
    r"|[a-z_-]+\[.*\]|[A-Z][A-Za-z0-9_]*)\Z"
)


def _tag_at(err: Any) -> int | None:
    """Where a union's branch tag sits in an error's loc (the first one), or None."""
    loc = tuple(err.get("loc", ()))
    for i, part in enumerate(loc):
        if i == len(loc) - 1 and err.get("type") == "extra_forbidden":
            break  # an unknown key is itself, never a branch
        if isinstance(part, str) and _TAG.match(part):
            return i
    return None


def _branches(errors: list[Any]) -> tuple[int, list[Any]] | None:
    """The union the first error belongs to: its tag's index and the errors of its branches
    (those with the same loc before the tag and a different tag there); None if no union."""
    first = errors[0]
    at = _tag_at(first)
    if at is None:
        return None
    loc = tuple(first["loc"])
    group = [e for e in errors if _tag_at(e) == at and tuple(e["loc"])[:at] == loc[:at]]
    if len({tuple(e["loc"])[at] for e in group}) < 2:
        return None
    return at, group


def _msg(err: Any) -> str:
    return str(err.get("msg", "invalid")).removeprefix("Value error, ")


def first_problem(exc: ValidationError) -> Problem:
    """The first problem; a union's branches (`int | Literal["auto"]`) are one problem at the
    field's own loc whose message lists what each branch takes: 'Input should be a valid
    integer or 'auto''."""
    errors = exc.errors()
    err = errors[0]
    loc = tuple(err.get("loc", ()))
    msg = _msg(err)
    kind = str(err.get("type", ""))
    more = exc.error_count() - 1
    union = _branches(errors)
    if union is not None:
        at, group = union
        more = exc.error_count() - len(group)
        direct = [e for e in group if len(e["loc"]) == at + 1]  # the branch itself refused it
        if len(loc) == at + 1 and len(direct) > 1:
            wants = [_msg(e).removeprefix("Input should be ") for e in direct]
            if all(_msg(e).startswith("Input should be ") for e in direct):
                msg = "Input should be " + " or ".join(dict.fromkeys(wants))
            else:
                msg = "; or ".join(dict.fromkeys(_msg(e) for e in direct))
            kind = "union"  # no one branch's hint fits ('give a whole number, without quotes')
        loc = loc[:at] + loc[at + 1 :]
    return Problem(loc=loc, msg=msg, type=kind, input=err.get("input"), more=more)
