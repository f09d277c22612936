"""Loading every kind of model offline: the messages a user sees are asserted.

There is no network on this machine: the pretrained download goes through a local socket set as
the proxy (one that drops connections, one that never answers) or, for a download that works, a
local HTTP server in place of the release URL; "cached" pretrained models are fake TorchScript
files placed where instanseg's loader keeps them, with wsitui's SHA-256 record."""

from __future__ import annotations

import io
import json
import socket
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.models.conftest import FakeFactory
from wsitui.models.device import pick_device
from wsitui.models.errors import ModelError
from wsitui.models.loaded import ModelCache, load
from wsitui.models.source import ModelSource, resolve

torch = pytest.importorskip("torch")


class _Peer:
    """A local TCP peer standing in for the network: `answer=False` accepts and never answers
    (a stuck proxy), else it closes each connection at once (no usable network)."""

    def __init__(self, answer: bool) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.accepted: list[socket.socket] = []
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)
            if self.answer:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


def _proxy(monkeypatch: pytest.MonkeyPatch, peer: _Peer) -> None:
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, peer.url)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Peer]:
    """The network as seen through a proxy that drops every connection."""
    peer = _Peer(answer=True)
    _proxy(monkeypatch, peer)
    yield peer
    peer.close()


def test_pretrained_offline_and_not_cached_is_one_line(model_dir: Path, offline: _Peer):
    source = resolve("brightfield_nuclei")
    with pytest.raises(ModelError) as err:
        load(source, "cpu")
    msg = str(err.value)
    assert offline.accepted, "the download went through the proxy"
    assert "pretrained model 'brightfield_nuclei' is not in the cache" in msg
    assert str(model_dir) in msg
    assert "set model to a local folder or .pt file, or 'shipped'" in msg
    assert "\n" not in msg
    assert not any(p.is_file() for p in model_dir.rglob("*"))  # nothing half-written


def test_a_proxy_that_never_answers_fails_the_download_at_its_deadline(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """instanseg's own loader waits forever here (requests.get with no timeout)."""
    from wsitui.models import download

    peer = _Peer(answer=False)
    _proxy(monkeypatch, peer)
    monkeypatch.setattr(download, "ANSWER_TIMEOUT_S", 1.0)
    done: list[BaseException] = []

    def run() -> None:
        try:
            load(resolve("brightfield_nuclei"), "cpu")
        except BaseException as exc:
            done.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)  # generous for a loaded machine; the deadline is 1 s
    peer.close()
    assert not t.is_alive(), "the download did not end at its deadline"
    assert peer.accepted
    msg = str(done[0])
    assert isinstance(done[0], ModelError) and "\n" not in msg
    assert "could not be downloaded (no answer within 1 s" in msg


def _zip_of(pt: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(pt, "instanseg.pt")
        z.writestr("rdf.yaml", "name: fake\n")
    return buf.getvalue()


def _http_serving(body: bytes) -> tuple[str, Callable[[], None]]:
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/m.zip", server.shutdown


def test_a_download_is_recorded_and_a_changed_file_is_refused(
    tmp_path: Path, model_dir: Path, fake_model: FakeFactory, monkeypatch: pytest.MonkeyPatch
):
    """The release server is faked (no internet here): a local HTTP server with the zip."""
    from wsitui.models import download

    url, stop = _http_serving(_zip_of(fake_model(tmp_path / "release.pt", pixel_size=0.25)))
    monkeypatch.setattr(download, "pretrained_url", lambda name, version: url)
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    try:
        model = load(resolve("brightfield_nuclei"), "cpu")
    finally:
        stop()
    cached = model_dir / "brightfield_nuclei" / "0.1.1" / "instanseg.pt"
    record = cached.with_name("instanseg.pt.sha256").read_text().split()[0]
    assert model.pixel_size == 0.25 and model.sha256 == record
    assert (cached.parent / "rdf.yaml").is_file()
    assert load(resolve(None), "cpu").sha256 == record  # the default now, from the cache
    fake_model(cached, pixel_size=0.5)  # the cached file changes
    with pytest.raises(ModelError) as err:
        load(resolve("brightfield_nuclei"), "cpu")
    assert "changed since it was downloaded" in str(err.value) and "\n" not in str(err.value)
    cached.with_name("instanseg.pt.sha256").unlink()
    with pytest.raises(ModelError, match="has no download record"):
        load(resolve("brightfield_nuclei"), "cpu")


def test_pretrained_cached_loads_without_network(
    model_dir: Path, offline: _Peer, fake_model: FakeFactory
):
    from wsitui.models.download import sha256_bytes

    pt = fake_model(model_dir / "brightfield_nuclei" / "0.1.1" / "instanseg.pt", pixel_size=0.25)
    pt.with_name("instanseg.pt.sha256").write_text(sha256_bytes(pt.read_bytes()))
    model = load(resolve(None), "cpu")  # the default, now that it is cached
    assert (model.name, model.source_kind, model.pixel_size) == (
        "brightfield_nuclei",
        "pretrained",
        0.25,
    )
    assert offline.accepted == []
    m = model.manifest()
    assert m["version"] == "0.1.1" and len(str(m["sha256"])) == 64


def test_a_pt_file_and_a_folder_load(tmp_path: Path, fake_model: FakeFactory):
    pt = fake_model(tmp_path / "exported.pt")
    fake_model(tmp_path / "folder" / "instanseg.pt")
    for value in ("exported.pt", "folder"):
        model = load(resolve(value, tmp_path), "cpu")
        assert model.pixel_size == 0.5 and model.channels == 3 and model.device == "cpu"
        rgb = np.full((2, 40, 48, 3), 240, np.uint8)
        rgb[:, 10:20, 10:20] = 30
        labels = model.predict(rgb)
        assert labels.dtype == np.int32 and labels.shape == (2, 40, 48)
        assert labels[0, 15, 15] == 1 and labels[0, 30, 30] == 0
    assert load(resolve(str(pt)), "cpu").sha256 == load(resolve("exported.pt", tmp_path)).sha256


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("garbage", "is not a TorchScript file"),
        ("no_pixel", "has no pixel_size: export it with InstanSeg_Torchscript"),
        ("one_channel", "expects 1 input channels; wsitui feeds RGB"),
    ],
)
def test_unusable_model_files(tmp_path: Path, fake_model: FakeFactory, kind: str, message: str):
    pt = tmp_path / "bad.pt"
    if kind == "garbage":
        pt.write_bytes(b"PK\x03\x04 this is not a model")
    else:
        fake_model(pt, pixel=kind != "no_pixel", channels=1 if kind == "one_channel" else 3)
    with pytest.raises(ModelError) as err:
        load(resolve(str(pt)), "cpu")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_but_absent():
    with pytest.raises(ModelError, match="device 'cuda' requested but CUDA is not available"):
        pick_device("cuda")
    with pytest.raises(ModelError, match="device 'cuda' requested"):
        load(resolve("shipped"), "cuda")


def test_auto_device_on_this_machine():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and torch.backends.mps.is_available():
        expected = "mps"
    assert pick_device("auto") == expected


def test_pick_device_checks_the_name_as_the_params_do():
    assert pick_device(" CPU ") == "cpu"  # as a job's `device` param is read
    with pytest.raises(ModelError, match=r"device 'cuda:x' is not one of auto, cpu, cuda"):
        pick_device("cuda:x")  # was int('x'): a ValueError traceback
    with pytest.raises(ModelError, match=r"device 'tpu' is not one of"):
        pick_device("tpu")


def test_out_of_memory_on_a_tile_is_one_line(tmp_path: Path, fake_model: FakeFactory):
    model = load(resolve(str(fake_model(tmp_path / "oom.pt", oom_side=100))), "cpu")
    model.predict(np.zeros((1, 64, 64, 3), np.uint8))  # small tiles still work
    with pytest.raises(ModelError) as err:
        model.predict(np.zeros((1, 128, 128, 3), np.uint8))
    assert str(err.value).startswith("out of memory on a batch of 1 tile(s) of 128x128 on cpu")
    model.predict(np.zeros((1, 64, 64, 3), np.uint8))  # and still work after


def test_model_cache_loads_once_per_model_and_device(tmp_path: Path, fake_model: FakeFactory):
    source = resolve(str(fake_model(tmp_path / "m.pt")))
    cache = ModelCache(cpu_threads=1)
    got: list[object] = []
    threads = [
        threading.Thread(target=lambda d=d: got.append(cache.get(source, d)))
        for d in ("auto", "cpu", "cpu", "auto")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.loads == 1 and len({id(m) for m in got}) == 1
    assert cache.get(resolve("classical")).is_classical
    assert cache.loads == 2
    cache.close()
    assert cache.get(source, "cpu") is not got[0]  # released on close, loaded again


def test_a_failed_load_is_not_cached(tmp_path: Path, fake_model: FakeFactory):
    pt = tmp_path / "later.pt"
    pt.write_bytes(b"not yet")
    source = ModelSource("file", "later.pt", pt)
    cache = ModelCache()
    with pytest.raises(ModelError, match="not a TorchScript file"):
        cache.get(source, "cpu")
    fake_model(pt)
    assert cache.get(source, "cpu").pixel_size == 0.5


def test_shipped_model_loads_through_the_same_path():
    model = load(resolve("shipped"), "cpu")
    assert (model.source_kind, model.pixel_size, model.channels) == ("shipped", 0.5, 3)
    assert model.manifest()["name"] == "wsitui_he_nuclei"
    out = model.predict(np.full((1, 64, 80, 3), 235, np.uint8))
    assert out.shape == (1, 64, 80) and out.dtype == np.int32
    # The manifest says which post-processing defaults the export carries (what ran, with the
    # job's own `postprocess`): those its training record says were written into it.
    record = json.loads((model.path.parent / "wsitui_model.json").read_text())
    defaults = model.manifest()["postprocess_defaults"]
    assert record["postprocess"] and all(
        defaults[k] == v for k, v in record["postprocess"].items()
    ), defaults


def test_gpu_resource_only_for_cuda(monkeypatch: pytest.MonkeyPatch):
    from wsitui.models import device

    assert device.gpu_resources("cuda:1") == {"gpu": 1}
    assert device.gpu_resources("cpu") == {} and device.gpu_resources("mps") == {}
    monkeypatch.setattr(device, "cuda_visible", lambda: False)
    assert device.gpu_resources("auto") == {}
    monkeypatch.setattr(device, "cuda_visible", lambda: True)
    assert device.gpu_resources("auto") == {"gpu": 1}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.undo()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device.cuda_visible() is False


def test_a_trained_model_brings_its_normalization(tmp_path: Path, fake_model: FakeFactory):
    folder = tmp_path / "trained"
    fake_model(folder / "instanseg.pt")
    assert load(resolve(str(folder)), "cpu").manifest()["normalization"] == "percentile"
    (folder / "wsitui_model.json").write_text('{"normalization": "fixed"}')
    assert load(resolve(str(folder)), "cpu").manifest()["normalization"] == "fixed"
    (folder / "wsitui_model.json").write_text('{"normalization": "zscore"}')
    with pytest.raises(ModelError, match="normalization 'zscore' is unknown: use fixed or"):
        load(resolve(str(folder)), "cpu")
    (folder / "wsitui_model.json").write_text("{not json")
    with pytest.raises(ModelError, match="is not valid JSON: fix or delete it"):
        load(resolve(str(folder)), "cpu")
