"""A config file's bytes as TOML text, and a TOML syntax error as one line naming the key.

tomllib says "Cannot overwrite a value (at line 8, column 11)" of a key given twice, and
"Invalid statement (at line 1, column 1)" of a file that starts with a byte-order mark; a
config saved in Latin-1 or UTF-16 was "not a text file". Each is said here with what to change.
Only key names and table headers are quoted from the file, never a value.
"""

from __future__ import annotations

import ast
import codecs
import re

_AT = re.compile(r"^(?P<what>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")
_TABLE = re.compile(r"^\[\[?\s*([^\]]+?)\s*\]\]?")


def config_text(raw: bytes) -> str:
    """The text of a config, or ValueError (one line) saying how to save it.

    A UTF-8 byte-order mark (Windows Notepad's) is dropped: it carries nothing else."""
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValueError("UTF-16 text (PowerShell's `>` writes it); save the config as UTF-8")
    if b"\x00" in raw:
        raise ValueError("not a text file; a config is TOML text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(
            f"line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8 (a Latin-1 or Windows "
            "file?); save the config as UTF-8"
        ) from None


def toml_problem(message: str, text: str) -> str:
    """tomllib's error `message` as what to change, naming the key or table it is about."""
    m = _AT.match(message)
    if m is None:
        return f"invalid TOML: {message}"
    what, line = m["what"], int(m["line"])
    lines = text.splitlines()
    src = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    table = _TABLE.match(src)
    key = src.split("=", 1)[0].strip() if "=" in src and table is None else ""
    named = f"[{table[1]}]" if table else (f"key {key!r}" if key else "")
    at = f"invalid TOML at line {line}"
    if what == "Cannot overwrite a value" and named:
        return f"{at}: {named} is given twice (or is already a value); keep one"
    if what.startswith("Cannot declare ") and what.endswith(" twice"):
        name = _dotted(what.removeprefix("Cannot declare ").removesuffix(" twice"))
        return f"{at}: table [{name}] is declared twice; merge the two into one"
    if what.startswith("Cannot mutate immutable namespace "):
        name = _dotted(what.removeprefix("Cannot mutate immutable namespace "))
        return (
            f"{at}: {name} is an inline table {{ ... }}, which cannot be added to later; "
            "put the key inside its braces"
        )
    if named:
        return f"{at}, column {m['col']} ({named}): {what}"
    return f"{at}, column {m['col']}: {what}"


def _dotted(names: str) -> str:
    try:
        parts = ast.literal_eval(names)
    except (ValueError, SyntaxError):
        return names
    return ".".join(str(p) for p in parts) if isinstance(parts, tuple) else str(parts)
