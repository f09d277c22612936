"""Who may reach `wsitui serve` (issue #27 item 2, #15 item 11, #26 item 5): Host, Origin and
the start-up token are checked on every route, a non-loopback --host needs --allow-remote, and
the page's URLs follow the host the browser asked for."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.serve.terminal import REPO, Served, open_tab, start_serve_with
from wsitui.serve.access import Access

pytestmark = [pytest.mark.anyio]


async def _get(url: str, **headers: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        return r.status, await r.text()


async def _ws_status(url: str, **headers: str) -> int:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


@pytest.mark.slow
async def test_foreign_host_origin_and_missing_or_wrong_token_are_refused(served: Served):
    port = served.url.rsplit(":", 1)[1]
    assert len(served.token) >= 20  # printed in the URL serve shows
    status, page = await _get(served.page_url)
    assert status == 200 and f"/ws/{served.token}" in page
    # The page and the socket without the token, or with a wrong one.
    assert (await _get(served.url + "/"))[0] == 403
    assert (await _get(served.url + "/?token=wrong"))[0] == 403
    assert await _ws_status(served.ws_url(token="")) == 403
    assert await _ws_status(served.ws_url(token="wrong")) == 403
    # DNS rebinding: a foreign Host, even with the token, on every route.
    for path in ("/?token=" + served.token, "/static/js/textual.js", "/download/x", "/nope"):
        status, text = await _get(served.url + path, Host=f"evil.example:{port}")
        assert status == 403 and "Host 'evil.example" in text, path
    assert await _ws_status(served.ws_url(), Host=f"evil.example:{port}") == 403
    # A web page elsewhere opening the socket (browsers send its Origin).
    assert await _ws_status(served.ws_url(), Origin="https://evil.example") == 403
    assert await _ws_status(served.ws_url(), Origin=f"http://localhost:{port}") == 403
    assert (await _get(served.url + "/static/js/textual.js"))[0] == 200
    async with open_tab(served) as tab:  # the right token, same origin: the TUI
        await tab.wait_for("tenant alice")


@pytest.mark.slow
async def test_no_token_says_so_and_still_checks_host(tmp_path: Path):
    server = start_serve_with(("--data-dir", tmp_path / "data"), ("--no-token",))
    try:
        assert server.token == ""
        assert (await _get(server.url + "/"))[0] == 200
        port = server.url.rsplit(":", 1)[1]
        assert (await _get(server.url + "/", Host=f"evil.example:{port}"))[0] == 403
    finally:
        server.stop()
    assert "--no-token: NO authentication" in server.banner


def test_a_non_loopback_host_needs_allow_remote(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-m", "wsitui.cli", "--data-dir", str(tmp_path), "serve", "--host",
         "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "--allow-remote" in lines[0] and "0.0.0.0" in lines[0]


@pytest.mark.slow
async def test_on_every_interface_it_warns_and_the_page_follows_the_requests_host(
    tmp_path: Path,
):
    server = start_serve_with(("--data-dir", tmp_path / "data"), ("--host", "0.0.0.0",
                              "--allow-remote"))  # fmt: skip
    try:
        port = server.url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            status, page = await _get(server.page_url, Host=host)
            assert status == 200
            assert f'data-session-websocket-url="ws://{host}/ws/{server.token}"' in page
            assert f'href="http://{host}/static/' in page
            assert "0.0.0.0" not in page
        assert (await _get(server.page_url, Host=f"evil.example:{port}"))[0] == 403
    finally:
        server.stop()
    err = server.proc.stderr.read() if server.proc.stderr else ""
    assert "WARNING: listening on 0.0.0.0" in err
    assert "0.0.0.0" not in server.url  # the URL it prints is one a browser can open


def test_the_access_rule():
    a = Access.for_bind("127.0.0.1", 8000, "tok")
    assert a.host_ok("127.0.0.1:8000") and a.host_ok("localhost:8000") and a.host_ok("[::1]:8000")
    assert not a.host_ok("127.0.0.1:8001") and not a.host_ok("evil.example:8000")
    assert not a.host_ok("127.0.0.1") and not a.host_ok(None) and not a.host_ok("a@b:8000")
    assert a.refusal("localhost:8000", "http://localhost:8000") is None
    assert a.refusal("localhost:8000", "null") is not None
    assert a.token_ok("tok") and not a.token_ok("tok2") and not a.token_ok(None)
    wide = Access.for_bind("0.0.0.0", 8000, None)
    assert wide.host_ok("127.0.0.1:8000") and wide.token_ok(None)
    assert not wide.host_ok("8.8.8.8:8000")  # not an address of this machine
    proxied = Access.for_bind("127.0.0.1", 8000, "t", ("wsitui.example.org",))
    assert proxied.host_ok("wsitui.example.org:8000")


def test_the_printed_url_carries_the_token(served: Served):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{20,}", served.page_url)


@pytest.mark.slow
async def test_the_token_never_reaches_the_log(served: Served):
    """serve's access log printed every request's path and query: `/?token=…` for the page
    and `/ws/<token>` for its socket, so its output (or a file it was sent to) held the key
    that drives the TUI. The banner alone shows the token; log lines say `<token>`."""
    port = served.url.rsplit(":", 1)[1]
    assert (await _get(served.page_url))[0] == 200
    assert await _ws_status(served.ws_url(), Origin=f"http://localhost:{port}") == 403  # refused
    async with open_tab(served) as tab:
        await tab.wait_for("tenant alice")
    served.stop()
    out, err = served.proc.communicate(timeout=15)
    logged = re.sub(r"\s+", "", out + err)  # the log folds long lines
    assert served.token not in logged
    assert "GET/?token=<token>" in logged and "/ws/<token>" in logged  # the requests still are
