"""Ask the terminal about its graphics once, before Textual owns it, and never crash doing so.

textual-image sizes terminal cells when `textual_image.widget` is first imported: from the
pixel size the kernel reports for the tty, else from the terminal's answer to `CSI 16 t`. Two
terminals users meet over SSH break that: a pty whose size is still 0×0 (the division fails and
the app dies before its first frame), and a terminal that never answers (textual-image logs the
timeout as a warning *with its traceback*, which Python's last-resort handler prints over the
screen). Here both end in textual-image's own default, a VT340 cell of 10×20 pixels, silently.
"""

from __future__ import annotations

import logging

from textual_image import _terminal

VT340_CELL = _terminal.CellSize(10, 20)


def probe_cell_size() -> _terminal.CellSize:
    """The terminal's cell size in pixels, cached where textual-image looks for it."""
    # A handler on textual-image's logger keeps Python's last-resort stderr handler away; a
    # handler configured later (the log file) still receives the record through propagation.
    quiet = logging.getLogger("textual_image")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    try:
        return _terminal.get_cell_size()
    except (ZeroDivisionError, OSError, ValueError, _terminal.TerminalError):
        _terminal.get_cell_size._result = VT340_CELL  # type: ignore[attr-defined]
        return VT340_CELL
