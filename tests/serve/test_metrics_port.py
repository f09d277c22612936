"""`wsitui serve --metrics-port` that no tab could bind is refused before serving.

Each tab's TUI serves the metrics. With `--metrics-port` equal to serve's own `--port`, or a
port something else holds, serve printed its URL and every tab then failed to open."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsitui.observability.server import bind
from wsitui.observability.setup import ObserveOptions
from wsitui.serve import server
from wsitui.serve.server import ServeOptions


@pytest.mark.parametrize("which", ["serve's own port", "a port in use"])
def test_a_metrics_port_no_tab_could_bind_is_one_line_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], which
):
    served: list[int] = []
    monkeypatch.setattr(server.WsituiServer, "serve", lambda self, debug=False: served.append(1))
    taken = bind("127.0.0.1", 0)
    port = taken.getsockname()[1]
    if which == "serve's own port":
        taken.close()  # serve binds it; the metrics port is the same number
    try:
        opts = ServeOptions(
            host="127.0.0.1",
            port=port if which == "serve's own port" else 0,
            data_dir=tmp_path / "data",
            observe=ObserveOptions(metrics_port=port, metrics_host="127.0.0.1"),
        )
        assert server.serve(opts) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wsitui serve: metrics endpoint 127.0.0.1:")
    assert f":{port}: " in err and "pick another --metrics-port" in err
    assert served == []


def test_a_free_metrics_port_is_left_for_the_tabs(tmp_path: Path, monkeypatch):
    served: list[int] = []
    monkeypatch.setattr(server.WsituiServer, "serve", lambda self, debug=False: served.append(1))
    probe = bind("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    opts = ServeOptions(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        observe=ObserveOptions(metrics_port=port, metrics_host="127.0.0.1"),
    )
    assert server.serve(opts) == 0 and served == [1]
    bind("127.0.0.1", port).close()  # the probe let it go: a tab can take it
