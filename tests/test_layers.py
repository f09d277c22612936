"""Layering: the engine never imports Textual (or any face) and names no job type; executors
never import faces; the session layer sits below both faces, and the TUI never imports the
headless face; faces and the session reach job types only through wsitui.jobs.registry."""

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


def _job_owner(path: Path) -> str:
    """A job type's folder under wsitui/jobs (or common / registry)."""
    return path.relative_to(PKG / "jobs").parts[0].removesuffix(".py")


def test_no_job_type_imports_another_executor():
    """Job types share code through wsitui.jobs.common or another type's algorithm module
    (SEGMENT_CELLS computes a tissue mask with TISSUE_MASK's), never through its executor."""
    jobs = PKG / "jobs"
    executors = {
        *(f"wsitui.jobs.{p.parent.name}.executor" for p in jobs.glob("*/executor.py")),
        *(f"wsitui.jobs.{p.stem}" for p in jobs.glob("*.py")),
    } - {"wsitui.jobs.__init__", "wsitui.jobs.registry"}
    bad = []
    for path in jobs.rglob("*.py"):
        if path.stem == "registry":
            continue
        for name in imported_names(path):
            target = name.removeprefix("wsitui.jobs.").split(".")[0]
            if name in executors and target != _job_owner(path):
                bad.append(f"{path.relative_to(PKG.parent)} imports {name}")
    assert bad == []


def _imports_of(path: Path) -> set[str]:
    """Modules imported, `from wsitui.jobs import x` as wsitui.jobs.x."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "wsitui.jobs":
                names.update(f"wsitui.jobs.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return names


def test_faces_and_session_reach_job_types_only_through_the_registry():
    """A face or the session never imports a job type's package: what it shows of one comes
    from the executor contract, through wsitui.jobs.registry. The formats every job type shares
    (wsitui.jobs.common: manifest file, atomic writes, the cells table) may be read directly:
    the cohort summary reads finished jobs' outputs."""
    bad = []
    for package in ("session", "tui", "headless", "serve", "observability", "viewer", "cli.py"):
        root = PKG / package
        for path in [root] if root.suffix == ".py" else root.rglob("*.py"):
            for name in _imports_of(path):
                allowed = name == "wsitui.jobs.registry" or name.startswith("wsitui.jobs.common.")
                if name.startswith("wsitui.jobs.") and not allowed:
                    bad.append(f"{path.relative_to(PKG.parent)} imports {name}")
    assert bad == []


def test_core_names_no_job_type():
    """The engine runs what it is given: no job type's name appears anywhere in wsitui/core
    (not an enum, not a metric, not a docstring)."""
    from wsitui.jobs.registry import job_type_names

    names = {"TISSUE_MASK", "SEGMENT_CELLS", "MEASURE_CELLS", *job_type_names()}
    bad = [
        f"{path.relative_to(PKG.parent)}:{i}: {name}"
        for path in (PKG / "core").rglob("*.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        for name in names
        if name in line
    ]
    assert bad == []


def test_importing_the_engine_loads_no_torch():
    code = (
        "import sys, wsitui.core.engine, wsitui.jobs.registry, wsitui.session.session; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'instanseg', "
        "'dask', 'distributed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
