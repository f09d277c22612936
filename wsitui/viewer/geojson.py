"""Reading GeoJSON overlays feature by feature, so a 190,000-cell file never sits in memory
as one parsed document (that alone would be ~1 GB of Python objects).

`iter_features(path)` accepts a FeatureCollection object (its "features" array is found by
key; the wsitui and QuPath writers put it near the start) or a bare array of features, plain
or gzipped (`.gz`). Every problem with the file itself is an OverlayError with one line.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

try:
    from orjson import loads as _loads
except ImportError:  # orjson is optional: the standard parser is ~3x slower
    from json import loads as _loads

CHUNK_CHARS = 1 << 22  # text decoded per read
_FEATURES = re.compile(r'"features"\s*:\s*\[')
_WS = re.compile(r"[\s,]*")

Progress = Callable[[int, int], None]  # (bytes read, bytes in the file)


class OverlayError(Exception):
    """A cells or tissue file the viewer cannot use; the message is one line."""


def _open_text(path: Path) -> tuple[IO[str], IO[bytes]]:
    raw = path.open("rb")
    head = raw.read(2)
    raw.seek(0)
    if head == b"\x1f\x8b":
        return gzip.open(raw, "rt", encoding="utf-8"), raw
    return io.TextIOWrapper(raw, encoding="utf-8"), raw


def iter_features(
    path: Path, what: str, progress: Progress | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the features of a GeoJSON file one at a time. `what` names the file in errors
    ("cells", "tissue")."""
    name = f"{what} file '{path}'"
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise OverlayError(f"{name} is a directory; give the {what}.geojson file in it")
        if not stat.S_ISREG(st.st_mode):  # a FIFO's open() blocks until a writer comes
            raise OverlayError(
                f"{name} is not a regular file (a FIFO, socket or device); give the "
                f"{what}.geojson a wsitui job or QuPath wrote"
            )
        total = st.st_size
        text, raw = _open_text(path)
    except FileNotFoundError:
        raise OverlayError(f"{name} does not exist; check the path") from None
    except OSError as e:
        raise OverlayError(f"cannot read {name}: {e.strerror or e}") from e
    decoder = json.JSONDecoder()
    with raw, text:
        try:
            buf = text.read(CHUNK_CHARS)
            eof = len(buf) < CHUNK_CHARS
            start = buf.lstrip()
            if start.startswith("["):
                pos = buf.index("[") + 1
            elif start.startswith("{"):
                while (m := _FEATURES.search(buf)) is None and not eof:
                    more = text.read(CHUNK_CHARS)
                    eof = len(more) < CHUNK_CHARS
                    buf += more
                if m is None:
                    raise OverlayError(
                        f'{name} is not a GeoJSON FeatureCollection (no "features" array); '
                        f"give the {what}.geojson a wsitui job or QuPath wrote"
                    )
                pos = m.end()
            else:
                raise OverlayError(
                    f"{name} is not GeoJSON (it does not start with {{ or [); "
                    f"give the {what}.geojson a wsitui job or QuPath wrote"
                )
            rest = buf[pos:]
            if _one_per_line(rest):
                # One feature per line (what wsitui's writers and many exporters write):
                # parse each line on its own, with orjson when installed (~3x faster).
                yield from _by_line(rest, text, raw, total, name, what, progress)
                return
            while True:
                pos = _WS.match(buf, pos).end()  # type: ignore[union-attr]
                if pos < len(buf) and buf[pos] == "]":
                    return
                try:
                    feature, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as e:
                    if eof:
                        if pos >= len(buf) or e.pos >= len(buf.rstrip()):
                            raise OverlayError(
                                f"{name} ends before its features array is closed; "
                                "it was cut short: copy or export it again"
                            ) from None
                        raise OverlayError(f"{name} is not valid JSON: {e}") from None
                    more = text.read(CHUNK_CHARS)
                    eof = len(more) < CHUNK_CHARS
                    buf = buf[pos:] + more
                    pos = 0
                    if progress is not None:
                        progress(raw.tell(), total)
                    continue
                yield _checked(feature, name, what)
                pos = end
        except UnicodeDecodeError as e:
            raise OverlayError(f"{name} is not UTF-8 text ({e.reason}); is it GeoJSON?") from None
        except (OSError, EOFError) as e:
            raise OverlayError(f"cannot read {name}: {e}") from None
        except RecursionError:  # json's decoder on arrays nested thousands deep
            raise OverlayError(
                f"{name} nests arrays or objects too deeply to be GeoJSON; give the "
                f"{what}.geojson a wsitui job or QuPath wrote"
            ) from None


def _one_per_line(rest: str) -> bool:
    """Whether the features start on a new line and the first one is that whole line."""
    if not rest.startswith(("\n", "\r\n")):
        return False
    first = rest.lstrip().split("\n", 1)[0].strip().removesuffix(",")
    try:
        return isinstance(_loads(first), dict)
    except ValueError:
        return False


def _checked(feature: Any, name: str, what: str) -> dict[str, Any]:
    if not isinstance(feature, dict):
        raise OverlayError(
            f"{name} has a feature that is not an object; "
            f"give the {what}.geojson a wsitui job or QuPath wrote"
        )
    return feature


def _by_line(
    head: str,
    text: IO[str],
    raw: IO[bytes],
    total: int,
    name: str,
    what: str,
    progress: Progress | None,
) -> Iterator[dict[str, Any]]:
    lines = head.splitlines()
    tail = "" if head.endswith("\n") else lines.pop()  # an incomplete last line: join the next
    count = 0

    def all_lines() -> Iterator[str]:
        nonlocal tail
        yield from lines
        for line in text:
            if tail:
                line, tail = tail + line, ""
            yield line
        if tail:
            yield tail

    lines_left = all_lines()
    for line in lines_left:
        item = line.strip()
        if item.endswith(","):
            item = item[:-1].rstrip()
        if not item:
            continue
        if item.startswith("]"):
            return
        try:
            feature = _loads(item)
        except ValueError as e:  # orjson.JSONDecodeError and json's are ValueErrors
            if not any(rest.strip() for rest in lines_left):  # the last line: cut short
                raise OverlayError(
                    f"{name} ends inside feature {count + 1:,}; "
                    "it was cut short: copy or export it again"
                ) from None
            raise OverlayError(f"{name} is not valid JSON (feature {count + 1:,}): {e}") from None
        count += 1
        if progress is not None and count % 8192 == 0:
            progress(raw.tell(), total)
        yield _checked(feature, name, what)
    raise OverlayError(
        f"{name} ends before its features array is closed; "
        "it was cut short: copy or export it again"
    )


def polygon_rings(geometry: Any) -> list[list[list[float]]] | None:
    """The rings of a Polygon / MultiPolygon geometry (exterior first), None for anything else."""
    if not isinstance(geometry, dict):
        return None
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if not isinstance(coords, list):
        return None
    if kind == "Polygon":
        return coords
    if kind == "MultiPolygon":
        return [ring for part in coords if isinstance(part, list) for ring in part]
    return None


def classification(props: dict[str, Any]) -> tuple[str, tuple[int, int, int] | None]:
    """(name, colour) of a feature's QuPath classification ('' and None when absent)."""
    c = props.get("classification")
    if isinstance(c, dict):
        name = str(c.get("name", ""))
        color = c.get("color")
        if (
            isinstance(color, list)
            and len(color) == 3
            and all(isinstance(v, int) and 0 <= v <= 255 for v in color)
        ):
            return name, (color[0], color[1], color[2])
        return name, None
    if isinstance(c, str):
        return c, None
    return "", None
