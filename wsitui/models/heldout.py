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
