"""The looks held out of training: `wsitui model eval` scores each of them.

Its own light module so that the CLI's parser can name them without importing the evaluation.
"""

from __future__ import annotations

# Nine looks: the generator's default and its named looks, none of them seen in training.
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
)
