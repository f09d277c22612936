"""`wsitui model list`: the shipped, cached and configured models, with what each one is."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from wsitui.models.errors import ModelError
from wsitui.models.source import (
    MODEL_FILE,
    ModelSource,
    classical_source,
    resolve,
    shipped_source,
)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    origin: str  # shipped | cached | configured | built-in
    kind: str
    path: str
    version: str
    pixel_size: float | None
    channels: int | None
    sha256: str
    problem: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _describe(source: ModelSource, origin: str) -> ModelEntry:
    from wsitui.models.classical import PIXEL_SIZE, VERSION

    if source.kind == "classical":
        return ModelEntry(source.name, origin, "classical", "", VERSION, PIXEL_SIZE, 3, VERSION)
    path = str(source.path or "")
    if source.path is None or not source.path.is_file():
        return ModelEntry(
            source.name, origin, source.kind, path, source.version, None, None, "",
            "not downloaded yet" if source.kind == "pretrained" else "file missing",
        )  # fmt: skip
    return _inspect(source, origin, source.path)


def _inspect(source: ModelSource, origin: str, path: Path) -> ModelEntry:
    """What the archive says, read without executing it (no torch.jit.load: loading a model
    runs its code); a model the archive check or its download record refuses says why."""
    from wsitui.models.archive import check_archive, read_info
    from wsitui.models.download import sha256_bytes, verify_download

    pixel, channels, problem, sha = None, None, "", ""
    try:
        data = path.read_bytes()
        sha = sha256_bytes(data)
        check_archive(path, data)
        info = read_info(path)
        pixel, channels = info.pixel_size, info.channels
        if pixel is None:
            problem = "no pixel_size"
        if source.kind == "pretrained":
            verify_download(path, sha)
    except OSError as exc:
        problem = f"cannot be read: {exc.strerror or exc}"
    except ModelError as exc:
        problem = str(exc)
    return ModelEntry(
        source.name, origin, source.kind, str(path), source.version, pixel, channels, sha,
        problem,
    )  # fmt: skip


def cached_sources(cache: Path) -> list[ModelSource]:
    """Models under the cache dir: <name>/<version>/instanseg.pt or <name>/instanseg.pt."""
    out: list[ModelSource] = []
    if not cache.is_dir():
        return out
    for pt in sorted(cache.glob(f"*/*/{MODEL_FILE}")):
        out.append(ModelSource("pretrained", pt.parent.parent.name, pt, pt.parent.name))
    for pt in sorted(cache.glob(f"*/{MODEL_FILE}")):
        out.append(ModelSource("folder", pt.parent.name, pt))
    return out


def list_models(cache: Path, configured: list[tuple[str, Path]] | None = None) -> list[ModelEntry]:
    """Shipped, classical, cached, then each configured `model` (value, config dir)."""
    entries = [_describe(shipped_source(), "shipped"), _describe(classical_source(), "built-in")]
    entries += [_describe(s, "cached") for s in cached_sources(cache)]
    seen: set[str] = set()
    for value, base in configured or []:
        if value in seen:
            continue
        seen.add(value)
        try:
            entries.append(_describe(resolve(value, base, cache), "configured"))
        except ModelError as exc:
            entries.append(ModelEntry(value, "configured", "?", "", "", None, None, "", str(exc)))
    return entries
