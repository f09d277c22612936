"""Fake TorchScript models for the loading tests (tiny, scripted in a second), and an isolated
model cache dir. There is no network here: every download in these tests is faked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


class _Labeller(torch.nn.Module):
    """Looks like an InstanSeg export: `fcn`, `pixel_size`, post-processing kwargs; labels the
    dark pixels of the first channel as one object; raises out-of-memory past `oom_side`."""

    def __init__(self, pixel_size: float, channels: int, oom_side: int) -> None:
        super().__init__()
        self.fcn = torch.nn.Conv2d(channels, 1, 1)
        self.pixel_size = pixel_size
        self.cells_and_nuclei = False
        self.oom_side = oom_side

    def forward(
        self, x: torch.Tensor, seed_threshold: float | None = None, min_size: int | None = None
    ) -> torch.Tensor:
        if x.shape[-1] > self.oom_side:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return (x[:, :1] < 0.3).float()


class _NoPixelSize(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fcn = torch.nn.Conv2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


FakeFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def fake_model(tmp_path_factory: pytest.TempPathFactory) -> FakeFactory:
    """make(path, pixel_size=0.5, channels=3, oom_side=10_000, pixel=True) -> the .pt path."""
    made: dict[tuple[float, int, int, bool], bytes] = {}

    def make(
        path: Path,
        pixel_size: float = 0.5,
        channels: int = 3,
        oom_side: int = 10_000,
        pixel: bool = True,
    ) -> Path:
        key = (pixel_size, channels, oom_side, pixel)
        if key not in made:
            module = _Labeller(pixel_size, channels, oom_side) if pixel else _NoPixelSize()
            tmp = tmp_path_factory.mktemp("fake") / "m.pt"
            torch.jit.save(torch.jit.script(module), str(tmp))
            made[key] = tmp.read_bytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(made[key])
        return path

    return make


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user model cache, via $WSITUI_MODEL_DIR."""
    d = tmp_path / "model-cache"
    monkeypatch.setenv("WSITUI_MODEL_DIR", str(d))
    monkeypatch.delenv("INSTANSEG_BIOIMAGEIO_PATH", raising=False)
    return d
