"""The cohort config the cohort tests share: one TISSUE_MASK -> SEGMENT_CELLS (classical model)
chain per slide that `slides` lists, in workflow `lab/<name>`."""

from __future__ import annotations

from pathlib import Path

TEMPLATE = """
  [[workflows.jobs]]
  id = "mask"
  type = "TISSUE_MASK"
  [[workflows.jobs]]
  id = "cells"
  type = "SEGMENT_CELLS"
  depends_on = ["mask"]
  params = { model = "classical" }
"""


def cohort_config(tmp: Path, slides: str, *, extra: str = "", name: str = "study") -> Path:
    """`tmp/cohort.toml`: `extra` (tables before the workflow), then the cohort workflow whose
    `slides` is the TOML value given (a list of globs or a CSV path)."""
    path = tmp / "cohort.toml"
    path.write_text(
        f'{extra}\n[[workflows]]\ntenant = "lab"\nname = "{name}"\nslides = {slides}\n' + TEMPLATE
    )
    return path
