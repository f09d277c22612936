"""The one error type of a session, and the exit codes every face documents.

Exit codes (README): 0 every job succeeded, 1 a job failed or was canceled, 2 a config or input
error found before anything ran, 3 a submission refused by admission control (rate limited or
queue full: nothing of it was submitted; retry later or raise `[limits]`), 130 interrupted
(state kept; the same command resumes).
"""

from __future__ import annotations

from wsitui.core.text import one_line

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_LIMITED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class SessionError(Exception):
    """What stops a session: one printable line (escaped) and the exit code that goes with it."""

    def __init__(self, message: object, exit_code: int = EXIT_INPUT) -> None:
        self.message = one_line(message)
        self.exit_code = exit_code
        super().__init__(self.message)
