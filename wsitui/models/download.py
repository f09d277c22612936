"""Downloading a pretrained InstanSeg model into the cache, with deadlines and a SHA-256 record.

instanseg's own loader calls `requests.get(url)` with no timeout (a proxy that accepts and never
answers holds the job forever) and `torch.jit.load`s what it got without any check, so wsitui
downloads itself: the URL from instanseg's model index, through the user's proxy settings
(`https_proxy`, ...), with
- `ANSWER_TIMEOUT_S` (30 s) for the connection and for every wait for an answer (a silent peer
  fails the job 30 s after it stops answering, with one line);
- `DOWNLOAD_DEADLINE_S` (10 min) for the whole file, and `MAX_BYTES` (1 GiB) for its size.
The archive is checked (`archive.check_archive`) before it enters the cache, and its SHA-256 is
recorded beside it (`instanseg.pt.sha256`); every load compares the file with that record.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from wsitui.models.archive import check_archive
from wsitui.models.errors import ModelError
from wsitui.models.source import MODEL_FILE, ModelSource, record_path

ANSWER_TIMEOUT_S = 30.0
DOWNLOAD_DEADLINE_S = 600.0
MAX_BYTES = 1 << 30


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recorded_sha256(model: Path) -> str | None:
    """The SHA-256 recorded when wsitui downloaded `model`; None if there is no record."""
    try:
        text = record_path(model).read_text().split()
    except OSError:
        return None
    return text[0].lower() if text and len(text[0]) == 64 else None


def verify_download(model: Path, sha256: str) -> None:
    """ModelError unless `sha256` (of the bytes about to be loaded) is the one recorded at
    download: a cached file that changed, or one wsitui never downloaded, is refused."""
    recorded = recorded_sha256(model)
    where = model.parent
    if recorded is None:
        raise ModelError(
            f"pretrained model {model} has no download record ({record_path(model).name}): it "
            f"was not downloaded by wsitui, so it is refused; delete {where} and wsitui "
            "downloads it again"
        )
    if recorded != sha256:
        raise ModelError(
            f"pretrained model {model} changed since it was downloaded (SHA-256 {sha256[:12]}, "
            f"recorded {recorded[:12]}): refused; delete {where} and wsitui downloads it again"
        )


def pretrained_url(name: str, version: str) -> str | None:
    spec = importlib.util.find_spec("instanseg")
    if spec is None or not spec.submodule_search_locations:
        return None
    index = Path(next(iter(spec.submodule_search_locations))) / "bioimageio_models"
    try:
        entries = json.loads((index / "model-index.json").read_text())
    except (OSError, ValueError):
        return None
    for e in entries:
        if e.get("name") == name and (not version or e.get("version") == version):
            return str(e["url"])
    return None


def _offline(source: ModelSource, cache: Path, why: str) -> ModelError:
    return ModelError(
        f"pretrained model {source.name!r} is not in the cache ({cache}) and could not be "
        f"downloaded ({why}): connect once to fetch it, or set model to a local folder or .pt "
        "file, or 'shipped'"
    )


def _fetch(url: str, into: Path) -> None:
    """`url` into the file `into`, within the deadlines; OSError/TimeoutError otherwise."""
    started = time.monotonic()
    opener = urllib.request.build_opener()  # proxies as the environment says now
    with opener.open(url, timeout=ANSWER_TIMEOUT_S) as response, into.open("wb") as f:
        size = 0
        while chunk := response.read(1 << 20):
            size += len(chunk)
            if size > MAX_BYTES:
                raise OSError(f"over {MAX_BYTES >> 20} MB")
            if time.monotonic() - started > DOWNLOAD_DEADLINE_S:
                raise TimeoutError(f"not done within {DOWNLOAD_DEADLINE_S:.0f} s")
            f.write(chunk)


def download_pretrained(source: ModelSource) -> None:
    """Fetch, check and cache `source` (a pretrained name) with its SHA-256 record; one-line
    ModelError on any failure (nothing half-written is left in the cache)."""
    assert source.path is not None
    target = source.path
    cache = target.parent.parent.parent
    url = pretrained_url(source.name, source.version)
    if url is None:
        raise _offline(source, cache, "not in instanseg's model index")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    except OSError as exc:  # a cache that is a file, or read-only: it was an internal error
        raise ModelError(
            f"model cache {cache} cannot take a download ({exc.strerror or exc}); give a "
            "folder you can write to with --model-dir or $WSITUI_MODEL_DIR"
        ) from None
    try:
        zipped = work / "model.zip"
        try:
            _fetch(url, zipped)
        except TimeoutError:
            raise _offline(
                source, cache, f"no answer within {ANSWER_TIMEOUT_S:.0f} s (a proxy or server "
                "that does not answer)",
            ) from None  # fmt: skip
        except OSError as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                reason = f"no answer within {ANSWER_TIMEOUT_S:.0f} s"
            raise _offline(source, cache, str(reason)[:120]) from None
        extracted = work / "files"
        try:
            with zipfile.ZipFile(zipped) as z:
                members = [m for m in z.namelist() if Path(m).name == MODEL_FILE]
                if len(members) != 1:
                    raise ModelError(f"the download of {source.name!r} holds no {MODEL_FILE}")
                z.extractall(extracted)  # zipfile keeps every member inside `extracted`
        except (zipfile.BadZipFile, OSError) as exc:
            raise _offline(source, cache, f"bad zip: {type(exc).__name__}") from None
        folder = (extracted / members[0]).parent
        data = (folder / MODEL_FILE).read_bytes()
        check_archive(target, data)
        for item in folder.iterdir():
            if item.name != MODEL_FILE and item.is_file():
                item.replace(target.parent / item.name)
        record_path(target).write_text(f"{sha256_bytes(data)}  {MODEL_FILE}\n")
        (folder / MODEL_FILE).replace(target)  # last: the model appears with its record
    finally:
        shutil.rmtree(work, ignore_errors=True)
