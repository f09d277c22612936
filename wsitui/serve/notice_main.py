"""`python -m wsitui.serve.notice_main MESSAGE`: the notice app as a tab's process."""

from __future__ import annotations

import sys

from wsitui.serve.notice import show_notice

if __name__ == "__main__":
    show_notice(" ".join(sys.argv[1:]) or "wsitui")
