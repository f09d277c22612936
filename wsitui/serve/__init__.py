"""`wsitui serve`: the TUI in a browser through textual-serve, one session per data dir."""
