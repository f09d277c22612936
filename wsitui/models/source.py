"""Which model a job uses: the `model` and `device` job params, resolved to a `ModelSource`.

No torch here: resolving is cheap and runs at submission. `model` is one of
- absent: the pretrained `brightfield_nuclei` when wsitui downloaded it into the cache (with its
  SHA-256 record), else the classical fallback (on real H&E it beats the shipped model:
  README "Which model is the default");
- `"shipped"` (or its name `wsitui_he_nuclei`): the small model committed with wsitui;
- `"classical"`: hematoxylin deconvolution + watershed, no torch at all;
- a pretrained InstanSeg name (`brightfield_nuclei`, ...): downloaded once into the cache dir;
- a folder holding `instanseg.pt`, or a TorchScript `.pt` file (relative to the config file).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from wsitui.models.device import check_device_name
from wsitui.models.errors import ModelError

SourceKind = Literal["shipped", "pretrained", "folder", "file", "classical"]

DEFAULT_PRETRAINED = "brightfield_nuclei"
SHIPPED_NAME = "wsitui_he_nuclei"
SHIPPED_DIR = Path(__file__).parent / "shipped" / SHIPPED_NAME
MODEL_FILE = "instanseg.pt"
CLASSICAL = "classical"
CACHE_ENV = "WSITUI_MODEL_DIR"


class ModelRef(BaseModel):
    """The `model` and `device` job params (embed these two fields in an executor's params)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    device: str = "auto"

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or "\0" in v or len(v) > 4096):
            raise ValueError("model must be a pretrained name, 'shipped', 'classical' or a path")
        return v.strip() if v is not None else None

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device_name(v)


@dataclass(frozen=True, slots=True)
class ModelSource:
    kind: SourceKind
    name: str  # what every face shows
    path: Path | None  # the TorchScript file (for pretrained: where it is or will be cached)
    version: str = ""
    fallback_reason: str = ""  # why a default was replaced by the classical fallback

    @property
    def key(self) -> str:
        """Identity for loading once: the file (or the classical version)."""
        return f"{self.kind}:{self.path or self.name}"


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Where pretrained models are cached: the option, else $WSITUI_MODEL_DIR, else the XDG
    cache ($XDG_CACHE_HOME/wsitui/models, default ~/.cache/wsitui/models)."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "wsitui" / "models"


def torch_available() -> bool:
    """Whether torch and instanseg are installed (without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "instanseg"))


def pretrained_index() -> dict[str, str]:
    """{name: newest version} from instanseg's own model index, read without importing it."""
    spec = importlib.util.find_spec("instanseg")
    if spec is None or not spec.submodule_search_locations:
        return {}
    index = Path(next(iter(spec.submodule_search_locations))) / "bioimageio_models"
    try:
        entries = json.loads((index / "model-index.json").read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, str] = {}
    for e in entries:
        out.setdefault(str(e["name"]), str(e["version"]))  # first is newest, as instanseg reads
    return out


def pretrained_path(name: str, version: str, cache: Path) -> Path:
    """Where instanseg's loader puts a pretrained model under `cache`."""
    return cache / name / version / MODEL_FILE


def record_path(model: Path) -> Path:
    """Where the SHA-256 of a downloaded pretrained model is recorded (beside it)."""
    return model.with_name(model.name + ".sha256")


def shipped_source() -> ModelSource:
    return ModelSource("shipped", SHIPPED_NAME, SHIPPED_DIR / MODEL_FILE, "1")


def classical_source(reason: str = "") -> ModelSource:
    from wsitui.models.classical import VERSION

    return ModelSource("classical", CLASSICAL, None, VERSION, reason)


def looks_like_path(model: str) -> bool:
    """Whether a `model` param names a file or folder rather than a model: it has a path
    separator, ends in .pt, or starts with '.' or '~' (a relative or home path)."""
    return "/" in model or "\\" in model or model.endswith(".pt") or model.startswith((".", "~"))


def resolve(
    model: str | None,
    base_dir: Path | None = None,
    cache: Path | None = None,
    *,
    base_is: str = "the config file",
) -> ModelSource:
    """The model a job will use; ModelError (one line) for anything unusable. `base_is` says
    what `base_dir` is, for the line of a path that does not exist."""
    cache = cache if cache is not None else cache_dir()
    if model is None:
        if not torch_available():
            return classical_source(
                "torch or instanseg-torch is not installed: the classical watershed is used "
                "(install wsitui with its dependencies to use InstanSeg)"
            )
        version = pretrained_index().get(DEFAULT_PRETRAINED, "")
        cached = pretrained_path(DEFAULT_PRETRAINED, version, cache)
        if version and cached.is_file() and record_path(cached).is_file():
            return ModelSource("pretrained", DEFAULT_PRETRAINED, cached, version)
        return classical_source()  # not shipped: issue #24, README "Which model is the default"
    if model == CLASSICAL:
        return classical_source()
    if not torch_available():
        raise ModelError(
            f"model {model!r} needs torch and instanseg-torch, which are not installed: "
            "install wsitui with its dependencies, or set model = 'classical'"
        )
    if model in ("shipped", SHIPPED_NAME):
        return shipped_source()
    index = pretrained_index()
    if model in index:
        return ModelSource(
            "pretrained", model, pretrained_path(model, index[model], cache), index[model]
        )
    if not looks_like_path(model) and not (base_dir is not None and (base_dir / model).exists()):
        # instanseg's own fallback for names outside its index: <cache>/<name>/instanseg.pt
        local = cache / model / MODEL_FILE
        if local.is_file():
            return ModelSource("folder", model, local)
        known = ", ".join([*index, "shipped", CLASSICAL])
        raise ModelError(
            f"model {model!r} is unknown: use one of {known}, a folder holding {MODEL_FILE} "
            "or a TorchScript .pt file"
        )
    path = Path(model).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.is_dir():
        pt = path / MODEL_FILE
        if not pt.is_file():
            raise ModelError(
                f"model folder {path} holds no {MODEL_FILE}: point at the folder of an exported "
                "InstanSeg model or at its .pt file"
            )
        return ModelSource("folder", path.name, pt.resolve())
    if path.is_file():
        return ModelSource("file", path.name, path.resolve())
    raise ModelError(
        f"model path {path} does not exist (relative paths are relative to {base_is}); "
        "check the path"
    )
