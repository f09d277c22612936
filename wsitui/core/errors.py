"""The engine's refusals: a command that raises one changed nothing; str() is one line."""

from __future__ import annotations


class EngineError(Exception):
    """A refused command; str() is a one-line message for the user."""


class NotFound(EngineError):
    pass


class InvalidRequest(EngineError):
    pass


class RateLimited(EngineError):
    """The tenant submitted faster than its token bucket allows; nothing was submitted."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(EngineError):
    """Too many PENDING jobs (the tenant's or in total); nothing was submitted. `never`: the
    submission alone is larger than the limit, so no wait lets it in."""

    def __init__(self, message: str, *, never: bool = False) -> None:
        super().__init__(message)
        self.never = never
