"""The µm/px a sample slide may be drawn at, and how they are worded: one source for the
generator, its refusal and `wsitui sample --help` (no numpy here: the CLI's parser reads it).

`--help` said 0.25 for 40x while the refusal listed 0.2495; both now come from `offered()`.
"""

from __future__ import annotations

MPP = 0.4990  # µm per level-0 pixel, as on a 20x Aperio scan
ZOOMS = {1: "20x", 2: "40x"}  # level-0 pixels per 20x pixel -> the objective it matches
TOLERANCE = 0.02  # relative: 0.5 is 0.499 (20x), 0.25 is 0.2495 (40x)


def offered(default: float | None = None) -> str:
    """'0.499 (20x, default) or 0.2495 (40x); a value within 2% of one, such as 0.5 or 0.25,
    is taken as it'."""
    parts = [
        f"{MPP / z:g} ({mag}{', default' if default == MPP / z else ''})"
        for z, mag in ZOOMS.items()
    ]
    near = " or ".join(f"{round(MPP / z, 2):g}" for z in ZOOMS)
    return (
        f"{' or '.join(parts)}; a value within {TOLERANCE:.0%} of one, such as {near}, is taken "
        "as it"
    )
