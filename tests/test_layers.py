"""Layering: the engine never imports Textual (or any face); executors never import faces;
the session layer sits below both faces, and the TUI never imports the headless face."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "wsitui"

# package -> prefixes its modules must not import
FORBIDDEN = {
    "core": (
        "textual",
        "rich",
        "torch",
        "dask",
        "distributed",
        "wsitui.tui",
        "wsitui.headless",
        "wsitui.jobs",
        "wsitui.models",
        "wsitui.session",
        "wsitui.cli",
    ),
    "models": ("textual", "wsitui.tui", "wsitui.headless", "wsitui.jobs", "wsitui.cli"),
    "slides": ("textual", "wsitui.tui", "wsitui.headless", "wsitui.cli"),
    "jobs": ("textual", "wsitui.tui", "wsitui.headless", "wsitui.cli"),
    "headless": ("textual", "wsitui.tui"),
    "observability": ("textual", "rich", "wsitui.tui", "wsitui.headless", "wsitui.cli"),
    # serve runs the TUI in its tabs itself: the CLI imports serve, never the other way round.
    "serve": ("wsitui.headless", "wsitui.cli"),
    # Below both faces: nothing that draws, and neither face.
    "session": ("textual", "rich", "wsitui.tui", "wsitui.headless", "wsitui.cli"),
    # The slide viewer's logic: no drawing toolkit, no engine, no face (its screen is in tui).
    "viewer": (
        "textual",
        "rich",
        "torch",
        "dask",
        "distributed",
        "wsitui.tui",
        "wsitui.headless",
        "wsitui.core",
        "wsitui.jobs",
        "wsitui.session",
        "wsitui.cli",
    ),
    # The TUI reaches the engine through the session layer, never through the headless face.
    "tui": ("wsitui.headless",),
}


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_layer_imports_what_it_must_not():
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for path in (PKG / package).rglob("*.py"):
            for name in imported_names(path):
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    bad.append(f"{path.relative_to(PKG.parent)} imports {name}")
    assert bad == []


# A core module this long does more than one job: engine.py grew to 1,294 lines of five before
# #16 split it (rules.py, one pure state machine with its rules stated in full, is the largest
# since). Split a module that outgrows this by job rather than raise the limit.
MAX_CORE_MODULE_LINES = 700


def test_no_core_module_outgrows_one_job():
    sizes = {path.name: len(path.read_text().splitlines()) for path in (PKG / "core").glob("*.py")}
    too_big = {name: n for name, n in sizes.items() if n > MAX_CORE_MODULE_LINES}
    assert too_big == {}, f"split these by job (limit {MAX_CORE_MODULE_LINES} lines): {too_big}"


def test_importing_the_engine_loads_no_textual():
    code = (
        "import sys, wsitui.core.engine, wsitui.core.eventlog; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_executor_imports_another():
    """Job types share code through wsitui.jobs.common, never through each other's module."""
    executors = {p.stem for p in (PKG / "jobs").glob("*.py")} - {"__init__", "registry"}
    bad = []
    for path in [
        *(PKG / "jobs").glob("*.py"),
        *(PKG / "jobs" / "common").rglob("*.py"),
        *(PKG / "jobs" / "cells").rglob("*.py"),
    ]:
        if path.stem == "registry":
            continue
        for name in imported_names(path):
            other = name.removeprefix("wsitui.jobs.")
            if name.startswith("wsitui.jobs.") and other in executors and other != path.stem:
                bad.append(f"{path.relative_to(PKG.parent)} imports {name}")
    assert bad == []


def test_importing_the_engine_loads_no_torch():
    code = (
        "import sys, wsitui.core.engine, wsitui.jobs.registry, wsitui.session.session; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'instanseg', "
        "'dask', 'distributed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
