"""The looks held out of training: `wsitui model eval` scores each of them.

Its own light module so that the CLI's parser can name them without importing the evaluation.
"""

from __future__ import annotations

# Ten looks: the generator's default and its named looks, none of them seen in training. The
# first nine are the "all nine" of the model card and README (comparable across models);
# `vesicular` (big vesicular nuclei drawn as real ones look, in packed purple nests) came later.
HELDOUT_LOOKS = (
    "default",
    "grainy",
    "soft",
    "dark",
    "clustered",
    "pale",
    "collagen",
    "ihc",
    "tumour",
    "vesicular",
)
FIRST_NINE = HELDOUT_LOOKS[:9]

# Dense looks, `dense0`..`dense19`: `dense_style` looks (packed, touching, small, pale and
# elongated nuclei, ink and bands; what a model finds hardest) drawn from a held-out stream of
# their own (`evaluate.look_style`), never from training's. Not in the default set: the card's
# "all nine" stay comparable across models. `dense0`..`dense3` are README's "four fresh dense
# looks".
DENSE_LOOKS = tuple(f"dense{k}" for k in range(20))
FRESH_DENSE = DENSE_LOOKS[:4]
