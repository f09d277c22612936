"""A config's bytes and its TOML syntax, said in one line naming the key or the encoding.

Before: a key given twice was "invalid TOML: Cannot overwrite a value (at line 8, column 11)",
a table given twice "Cannot declare ('scheduler',) twice", a config saved by Notepad with a
byte-order mark "Invalid statement (at line 1, column 1)", and one saved in Latin-1 or UTF-16
"not a text file".
"""

from __future__ import annotations

import codecs

import pytest

from wsitui.session.config import ConfigError, load_config

WF = '[[workflows]]\ntenant = "t"\nname = "w"\n'
JOB = '  [[workflows.jobs]]\n  id = "a"\n  type = "TISSUE_MASK"\n  slide = "s.svs"\n'


def error_of(tmp_path, raw: bytes) -> str:
    (tmp_path / "c.toml").write_bytes(raw)
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "c.toml")
    line = str(exc.value)
    assert "\n" not in line and line.startswith(f"{tmp_path / 'c.toml'}: ")
    return line.removeprefix(f"{tmp_path / 'c.toml'}: ")


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (
            WF + JOB + '  id = "b"\n',
            "invalid TOML at line 8: key 'id' is given twice (or is already a value); keep one",
        ),
        (
            "[scheduler]\nmax_workers = 2\n[scheduler]\nmax_workers = 3\n",
            "invalid TOML at line 3: table [scheduler] is declared twice; merge the two into one",
        ),
        (
            WF + JOB + "  params = { tile_size = 256 }\n  params.level = 1\n",
            "invalid TOML at line 9: workflows.jobs.params is an inline table { ... }, which "
            "cannot be added to later; put the key inside its braces",
        ),
        (
            WF + JOB + "  params = { tile_size = 256, tile_size = 512 }\n",
            "invalid TOML at line 8, column 46 (key 'params'): Duplicate inline table key "
            "'tile_size'",
        ),
        ("[[workflows]\n", "invalid TOML at line 1, column 12 ([workflows]): Expected ']]'"),
    ],
    ids=["key_twice", "table_twice", "inline_extended", "inline_key_twice", "bad_header"],
)
def test_a_toml_mistake_names_the_key_and_the_fix(tmp_path, body: str, said: str):
    assert error_of(tmp_path, body.encode()).startswith(said)


def test_a_value_is_never_quoted_from_the_file(tmp_path):
    # Only key names and table headers are shown: a value may be something not to print.
    line = error_of(tmp_path, b'[serve]\ntoken = "s3cr3t-value\n')
    assert "token" in line and "s3cr3t" not in line


def test_a_utf8_byte_order_mark_is_read_as_the_text_it_starts(tmp_path):
    (tmp_path / "c.toml").write_bytes(codecs.BOM_UTF8 + (WF + JOB).encode())
    config = load_config(tmp_path / "c.toml")
    assert [w.name for w in config.workflows] == ["w"]


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (
            (WF + JOB + "# café\n").encode("latin-1"),
            "line 8: byte 0xe9 is not UTF-8 (a Latin-1 or Windows file?); save the config as UTF-8",
        ),
        ((WF + JOB).encode("utf-16"), "UTF-16 text (PowerShell's `>` writes it); save the config"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not a text file; a config is TOML text"),
    ],
    ids=["latin1", "utf16", "binary"],
)
def test_a_config_in_another_encoding_says_to_save_it_as_utf8(tmp_path, raw: bytes, said: str):
    assert error_of(tmp_path, raw).startswith(said)
