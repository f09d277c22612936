"""`python -m wsitui`: the same command line as the `wsitui` script."""

from wsitui.cli import main

raise SystemExit(main())
