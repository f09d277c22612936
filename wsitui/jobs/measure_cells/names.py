"""The measurement names MEASURE_CELLS writes, QuPath's where QuPath has one.

QuPath's cell detection names its measurements "<compartment>: <feature>" and
"<stain>: <compartment>: <statistic>"; "Cytoplasm" is the ring of `expansion_um` around the
nucleus and "Cell" the nucleus with its ring, as QuPath's cell expansion draws them.
"""

from __future__ import annotations

SHAPE = (
    "Nucleus: Area µm^2",
    "Nucleus: Perimeter µm",
    "Nucleus: Circularity",
    "Nucleus: Solidity",
    "Nucleus: Eccentricity",
    "Nucleus: Major axis µm",
    "Nucleus: Minor axis µm",
    "Nucleus: Orientation degrees",
    "Cell: Area µm^2",
)
STAINS = ("Hematoxylin", "Eosin")
COMPARTMENTS = ("Nucleus", "Cytoplasm")
STATS = ("Mean", "Std.Dev.", "Min", "Max")
INTENSITY = tuple(f"{s}: {c}: {t}" for s in STAINS for c in COMPARTMENTS for t in STATS)
ALL = SHAPE + INTENSITY
