"""A model file is code: hostile TorchScript is refused before `torch.jit.load`, and
`wsitui model list` reads what it shows from the archive without executing it (issue #27)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models.conftest import FakeFactory
from wsitui.models.archive import check_archive, read_info
from wsitui.models.catalog import list_models
from wsitui.models.errors import ModelError
from wsitui.models.loaded import load
from wsitui.models.source import ModelSource, resolve, shipped_source

torch = pytest.importorskip("torch")


class _WritesAtLoad(torch.nn.Module):
    """`__setstate__` runs inside torch.jit.load: it creates (or overwrites) `path`."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.fcn = torch.nn.Conv2d(3, 1, 1)
        self.path = path
        self.pixel_size = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]

    @torch.jit.export
    def __getstate__(self) -> tuple[str, float, bool]:
        return (self.path, self.pixel_size, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, float, bool]) -> None:
        self.path = state[0]
        self.training = state[2]
        t = torch.from_file(self.path, shared=True, size=6, dtype=torch.uint8)
        self.pixel_size = state[1] + float(t.sum().item()) * 0.0


class _WritesInForward(torch.nn.Module):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.fcn = torch.nn.Conv2d(3, 1, 1)
        self.path = path
        self.pixel_size = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.path, shared=True, size=6, dtype=torch.uint8)
        return x[:, :1] + t.sum() * 0


def _save(module: torch.nn.Module, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(module), str(path))
    return path


@pytest.mark.parametrize("hostile", [_WritesAtLoad, _WritesInForward])
def test_a_model_that_writes_a_file_is_refused_before_loading(tmp_path: Path, hostile: type):
    victim = tmp_path / "victim"
    pt = _save(hostile(str(victim)), tmp_path / "hostile" / "instanseg.pt")
    assert not victim.exists()
    for value in (str(pt), str(pt.parent)):
        with pytest.raises(ModelError) as err:
            load(resolve(value), "cpu")
        msg = str(err.value)
        assert "\n" not in msg
        assert "refused before loading" in msg and "torch.from_file" in msg
        assert "sources you trust" in msg
        assert not victim.exists()


def test_model_list_never_executes_a_model(tmp_path: Path, model_dir: Path):
    """A hostile file planted in the cache (where the default pretrained model lives) and one
    named by the config: listed with the refusal as their problem, nothing written."""
    victim = tmp_path / "victim"
    _save(_WritesAtLoad(str(victim)), model_dir / "brightfield_nuclei" / "0.1.1" / "instanseg.pt")
    _save(_WritesAtLoad(str(victim)), model_dir / "planted" / "instanseg.pt")
    named = _save(_WritesAtLoad(str(victim)), tmp_path / "named.pt")
    entries = {e.path: e for e in list_models(model_dir, [(str(named), tmp_path)])}
    assert not victim.exists()
    cached = str(model_dir / "brightfield_nuclei" / "0.1.1" / "instanseg.pt")
    assert "torch.from_file" in entries[cached].problem
    assert "torch.from_file" in entries[str(model_dir / "planted" / "instanseg.pt")].problem
    assert "torch.from_file" in entries[str(named.resolve())].problem
    # The default never picks a cached file wsitui did not download.
    assert resolve(None).kind == "classical"


def test_model_list_reads_pixel_size_and_channels_without_torch_jit_load(
    tmp_path: Path, fake_model: FakeFactory, monkeypatch: pytest.MonkeyPatch
):
    def no_load(*a: object, **k: object) -> None:
        raise AssertionError("torch.jit.load called by model list")

    monkeypatch.setattr(torch.jit, "load", no_load)
    pt = fake_model(tmp_path / "quarter.pt", pixel_size=0.25, channels=1)
    entries = list_models(tmp_path / "cache", [(str(pt), tmp_path)])
    shipped, configured = entries[0], entries[-1]
    assert (shipped.pixel_size, shipped.channels, shipped.problem) == (0.5, 3, "")
    assert len(shipped.sha256) == 64
    assert (configured.pixel_size, configured.channels) == (0.25, 1)


def test_the_archive_reader_agrees_with_torch_on_the_shipped_model():
    path = shipped_source().path
    assert path is not None
    check_archive(path)
    info = read_info(path)
    module = torch.jit.load(str(path), map_location="cpu")
    from wsitui.models.loaded import _expected_channels

    assert (info.pixel_size, info.channels) == (module.pixel_size, _expected_channels(module))


def test_the_shipped_model_still_loads():
    model = load(resolve("shipped"), "cpu")
    assert (model.pixel_size, model.channels) == (0.5, 3)


@pytest.mark.slow
@pytest.mark.parametrize("layers", [(8, 16), (4, 8, 16)])
def test_a_fresh_instanseg_export_passes_the_check(tmp_path: Path, layers: tuple[int, ...]):
    """Any genuine InstanSeg export passes, whatever the network's size: an untrained network
    exported by `wsitui model train`'s own export."""
    pytest.importorskip("instanseg")
    from instanseg.utils.loss.instanseg_loss import InstanSeg
    from instanseg.utils.model_loader import build_model_from_dict

    from wsitui.models.train import export

    net = build_model_from_dict(
        {"model_str": "InstanSeg_UNet", "dim_in": 3, "layers": list(layers),
         "cells_and_nuclei": False, "dim_coords": 2, "n_sigma": 2, "dim_seeds": 1,
         "multihead": False, "norm": "BATCH", "dropprob": 0.0},
        random_seed=0,
    )  # fmt: skip
    loss = InstanSeg(
        n_sigma=2, device="cpu", binary_loss_fn_str="lovasz_hinge", seed_loss_fn="l1_distance",
        window_size=32, dim_coords=2, dim_seeds=1,
    )  # fmt: skip
    net = loss.initialize_pixel_classifier(net, MLP_width=5)
    pt = tmp_path / "fresh" / "instanseg.pt"
    export(net, pt)
    check_archive(pt)
    assert read_info(pt).channels == 3
    model = load(ModelSource("file", "fresh", pt), "cpu")
    assert model.pixel_size == read_info(pt).pixel_size


def test_other_ways_out_are_refused(tmp_path: Path, fake_model: FakeFactory):
    """Hand-written archive code (a TorchScript archive is just a zip): an import, a C++
    custom class, an op outside InstanSeg's, a pickle global outside TorchScript's."""
    import zipfile

    good = fake_model(tmp_path / "good.pt")
    with zipfile.ZipFile(good) as z:
        files = {n: z.read(n) for n in z.namelist()}
    code = next(n for n in files if "/code/" in n and n.endswith(".py"))
    cases = {
        "import os\n": "an import",
        "def f(x: Tensor) -> Tensor:\n  return ops.image.write_file(x)\n": "ops.image.write_file",
        "def f() -> int:\n  return __torch__.torch.classes.c10d.ProcessGroup()\n": "custom class",
        "def f(x: Tensor) -> Tensor:\n  return torch.linalg_solve(x, x)\n": "torch.linalg_solve",
        "def f(x: str) -> int:\n  return rpc_async(x)\n": "rpc_async",
        "def f(x: str) -> int:\n  t = torch\n  return t.empty(0)\n": "torch as a value",
        "def f(x: str) -> int:\n  return getattr(torch, 'from_file')(x)\n": "getattr on torch",
    }
    for extra, named in cases.items():
        bad = tmp_path / "bad.pt"
        with zipfile.ZipFile(bad, "w") as z:
            for n, data in files.items():
                z.writestr(n, data + extra.encode() if n == code else data)
        with pytest.raises(ModelError, match="refused") as err:
            check_archive(bad)
        assert named in str(err.value)
    bad = tmp_path / "pickle.pt"
    data_pkl = next(n for n in files if n.endswith("data.pkl"))
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in files.items():
            z.writestr(n, b"\x80\x02cos\nsystem\nq\x00." if n == data_pkl else data)
    with pytest.raises(ModelError, match=r"os\.system in .*data\.pkl"):
        check_archive(bad)
