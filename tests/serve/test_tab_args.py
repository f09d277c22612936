"""A tab process reads back exactly the options `wsitui serve` hands it (serve/tab.py parses them
itself since it no longer goes through wsitui.cli): an option serve writes that the tab does not
know would end every tab with a usage error instead of the TUI."""

from __future__ import annotations

from pathlib import Path

from wsitui.observability.setup import ObserveOptions
from wsitui.serve.server import ServeOptions, tab_argv
from wsitui.serve.tab import tab_parser


def test_every_option_serve_writes_reaches_the_tab(tmp_path: Path):
    opts = ServeOptions(
        host="127.0.0.1",
        port=8000,
        config=tmp_path / "c.toml",
        data_dir=tmp_path / "data",
        tenant="alice",
        observe=ObserveOptions(
            metrics_port=9100, metrics_host="0.0.0.0", log_file=tmp_path / "l.log", log_json=True
        ),
    )
    args = tab_parser().parse_args(tab_argv(opts))
    assert (args.config, args.data_dir, args.tenant) == (
        tmp_path / "c.toml",
        tmp_path / "data",
        "alice",
    )
    assert (args.metrics_port, args.metrics_host) == (9100, "0.0.0.0")
    assert (args.log_file, args.log_json) == (tmp_path / "l.log", True)


def test_a_plain_serve_gives_the_tab_no_options():
    args = tab_parser().parse_args(tab_argv(ServeOptions(host="127.0.0.1", port=8000)))
    assert (args.config, args.data_dir, args.tenant, args.metrics_port) == (None,) * 4
    assert (args.log_file, args.log_json) == (None, False)
