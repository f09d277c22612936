"""Training and held-out images from the project's one sample generator (`wsitui.slides`).

Training draws a new wide random look (`wide_style`: H&E and IHC, with collagen, keratin,
folds, ink, pigment, red cells and cytoplasm it must ignore) for every few patches from its own
seed stream; held-out sets draw styles from another stream and patch seeds from a range
training never uses, plus the named looks training never sees.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from wsitui.slides.patches import render_patch
from wsitui.slides.style import (
    STYLES,
    dark_nest_style,
    dense_style,
    random_style,
    tumour_style,
    wide_style,
    with_specks,
)

PIXEL_SIZE = 0.5  # µm/px of every generated patch and of the shipped model
TRAIN_STREAM, HELDOUT_STREAM = 101, 202
HELDOUT_SEED_BASE = 2**30  # training patch seeds are below this, held-out ones above
HELDOUT_NAMED = ("grainy", "soft", "dark")
TUNING_SEED = 1  # `heldout_set(seed=1)` tunes post-processing; the test set is seed 0

Sample = tuple[np.ndarray, np.ndarray]  # rgb uint8 (H, W, 3), labels int32 (H, W)


def training_pool(
    seed: int,
    count: int,
    size: int,
    per_style: int = 2,
    negatives: float = 0.0,
    tumour: float = 0.0,
    dense: float = 0.0,
    specks: float = 0.0,
    dark_nests: float = 0.0,
) -> list[Sample]:
    """`count` patches of `size` px, a fresh random style every `per_style` patches; a share
    `negatives` of the styles has no nuclei at all (eosin, texture, lumens and glass only); a
    share `tumour` is a `tumour_style` look (big vesicular nuclei, purple cytoplasm); a share
    `dense` is a `dense_style` look (packed, touching, overlapping, elongated nuclei); a share
    `specks` of all looks (with nuclei or not) gets pale purple specks or nucleus-sized pale
    blobs that are not nuclei (`with_specks`), drawn from a stream of their own so that the
    other looks stay those of `specks=0`; a share `dark_nests` of the looks with nuclei is
    replaced by a `dark_nest_style` look (big dark nuclei packed in dark purple cytoplasm),
    from a third stream."""
    rng = np.random.default_rng([TRAIN_STREAM, seed])
    speck_rng = np.random.default_rng([TRAIN_STREAM, seed, 7])
    nest_rng = np.random.default_rng([TRAIN_STREAM, seed, 8])
    out: list[Sample] = []
    style = wide_style(rng)
    for i in range(count):
        if i % per_style == 0:
            pick = rng.random() if tumour > 0 or dense > 0 else 1.0
            if pick < tumour:
                style = tumour_style(rng, name=f"train{i}")
            elif pick < tumour + dense:
                style = dense_style(rng, name=f"train{i}")
            else:
                style = wide_style(rng, name=f"train{i}")
            if rng.random() < negatives:
                style = replace(style, nucleus_density=0.0)
            if dark_nests > 0 and style.nucleus_density > 0 and nest_rng.random() < dark_nests:
                style = dark_nest_style(nest_rng, name=f"train{i}")
            if specks > 0 and speck_rng.random() < specks:
                style = with_specks(style, speck_rng)
        patch_seed = int(rng.integers(0, HELDOUT_SEED_BASE))
        out.append(render_patch(style, (size, size), patch_seed, PIXEL_SIZE))
    return out


def heldout_set(
    count: int = 20, size: int = 256, seed: int = 0, named: bool = True
) -> list[Sample]:
    """Images in styles and seeds training never used: named looks first (unless `named` is
    False), then random ones."""
    rng = np.random.default_rng([HELDOUT_STREAM, seed])
    out: list[Sample] = []
    for i in range(count):
        if named and i < len(HELDOUT_NAMED):
            style = STYLES[HELDOUT_NAMED[i]]
        else:
            style = random_style(rng, name=f"heldout{i}")
        patch_seed = HELDOUT_SEED_BASE + int(rng.integers(0, HELDOUT_SEED_BASE))
        out.append(render_patch(style, (size, size), patch_seed, PIXEL_SIZE))
    return out


TUNING_KINDS = (wide_style, dense_style, tumour_style, dark_nest_style)


def tuning_set(count: int = 16, size: int = 384) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(kind, rgb, labels) images for choosing a method's settings: wide, dense, tumour and
    dark-nest looks in turn, from a stream of their own (neither training's nor any held-out
    set's), patch seeds in the held-out range. What the classical fallback's levels were chosen
    on (`scripts/tune_classical.py`)."""
    rng = np.random.default_rng([HELDOUT_STREAM, TUNING_SEED, 7])
    out = []
    for i in range(count):
        make = TUNING_KINDS[i % len(TUNING_KINDS)]
        style = make(rng, name=f"tune{i}")
        patch_seed = HELDOUT_SEED_BASE + int(rng.integers(0, HELDOUT_SEED_BASE))
        rgb, labels = render_patch(style, (size, size), patch_seed, PIXEL_SIZE)
        out.append((make.__name__, rgb, labels))
    return out
