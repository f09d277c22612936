"""Running `wsitui` as a user does (a subprocess), and checking its one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def wsitui(
    *args: str | Path, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m wsitui.cli ARGS`; a hang fails the test (TimeoutExpired) instead of CI."""
    return subprocess.run(
        [sys.executable, "-m", "wsitui.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
    )


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def one_job_config(path: Path, slide: Path | str, *, name: str = "w", extra: str = "") -> Path:
    """A config with one TISSUE_MASK job `a` in workflow `t/<name>`; `extra` is appended."""
    return write_config(
        path,
        f'[[workflows]]\ntenant = "t"\nname = "{name}"\n'
        f'  [[workflows.jobs]]\n  id = "a"\n  type = "TISSUE_MASK"\n  slide = "{slide}"\n' + extra,
    )


def assert_one_line_error(out: subprocess.CompletedProcess[str], code: int, *expected: str) -> str:
    """Exit `code`, stderr exactly one line with no traceback and no raw ESC; return it."""
    lines = out.stderr.splitlines()
    assert out.returncode == code, (out.returncode, out.stderr)
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr and "\x1b" not in out.stderr, out.stderr
    for part in expected:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def corrupt_tiles(src: Path, dst: Path) -> None:
    """Same headers (it opens fine), but every tile's JPEG data is zeroed: reads fail."""
    import tifffile

    data = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tif:
        for page in tif.pages:
            if page.is_tiled:
                for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                    data[offset : offset + count] = bytes(count)
    dst.write_bytes(bytes(data))


def bad_after_fine_config(tmp_path: Path, broken_from: Path, good: Path) -> Path:
    """tmp_path/c.toml: workflow `t/w` with three TISSUE_MASK jobs, `bad` on a copy of
    `broken_from` with corrupt tiles (it fails), `after` on `good` depending on it (blocked), and
    `fine` on `good` on another branch (succeeds)."""
    broken = tmp_path / "broken.svs"
    corrupt_tiles(broken_from, broken)
    return write_config(
        tmp_path / "c.toml",
        f"""
[[workflows]]
tenant = "t"
name = "w"
  [[workflows.jobs]]
  id = "bad"
  type = "TISSUE_MASK"
  slide = "{broken}"
  [[workflows.jobs]]
  id = "after"
  type = "TISSUE_MASK"
  slide = "{good}"
  depends_on = ["bad"]
  [[workflows.jobs]]
  id = "fine"
  type = "TISSUE_MASK"
  slide = "{good}"
  branch = "other"
""",
    )
