"""Outputs written to hidden temporaries: kept on a clean exit, thrown away on an error.

`Finishing` is the context manager a job's writers and pipelines share: leaving the `with`
normally calls `close()` (finish the work, move the files into place), leaving it with an
exception calls `abort()` (stop and discard).
`StagedFiles` adds the hidden `.partial` temporaries a writer fills and renames into place
through the job's fence (`files.commit`): `abort()` closes what is open and removes them, so a
failed or canceled job leaves neither half a file nor a temporary behind.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

from wsitui.jobs.common.files import Fence, current_fence


class Finishing:
    """`with x:` calls `x.close()` on a clean exit, `x.abort()` on an exception."""

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class StagedFiles(Finishing):
    """A writer of files in `out` that stay hidden temporaries (`partial(name)`) until close.

    A subclass opens its temporaries in `__init__` (after this one's), finishes and commits
    them in `close()` (calling `discard()` in a `finally`), and closes its open handles in
    `release()`; `abort()` is release, then discard.
    """

    def __init__(self, out: Path, fence: Fence | None = None) -> None:
        self.out = out
        self._fence = fence if fence is not None else current_fence()
        self._partials: list[Path] = []

    def partial(self, name: str) -> Path:
        """The hidden temporary `name` is written to, removed by `discard()`."""
        path = self.out / f".{name}.partial"
        self._partials.append(path)
        return path

    def release(self) -> None:
        """Close what is open without finishing it (nothing by default)."""

    def discard(self, *more: Path) -> None:
        """Remove the temporaries (and `more`) that are still there."""
        for path in [*self._partials, *more]:
            path.unlink(missing_ok=True)

    def abort(self) -> None:
        try:
            self.release()
        finally:
            self.discard()
