"""`python -m wsitui.serve.notice_main MESSAGE`: the notice app as a tab's process."""

from __future__ import annotations

import sys

from wsitui.serve.notice import show_notice
from wsitui.serve.tab import end_with_parent

if __name__ == "__main__":
    end_with_parent()
    show_notice(" ".join(sys.argv[1:]) or "wsitui")
