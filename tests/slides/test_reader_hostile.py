"""Slide files a reader cannot use, named for what they are (hostile2 round)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from wsitui.slides.errors import SlideError
from wsitui.slides.reader import open_slide


@pytest.mark.parametrize(
    ("dtype", "words"),
    [(np.float32, "32-bit floating-point"), (np.uint32, "32-bit integer")],
)
def test_a_tiled_tiff_of_samples_openslide_cannot_decode_is_named_not_called_corrupt(
    tmp_path: Path, dtype: type, words: str
):
    """A 32-bit (float or integer) tiled TIFF opened, then every read failed as 'truncated or
    corrupt ... copy or export the file again': copying it again changes nothing. It is
    refused at open, naming the sample type and the fix."""
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, np.ones((512, 512, 3), dtype), tile=(256, 256))
    with pytest.raises(SlideError) as err:
        open_slide(path)
    message = str(err.value)
    assert words in message and "8-bit" in message and "corrupt" not in message, message


def test_a_16_bit_tiled_tiff_still_opens(tmp_path: Path):
    path = tmp_path / "u16.tif"
    tifffile.imwrite(path, np.full((512, 512, 3), 30000, np.uint16), tile=(256, 256))
    with open_slide(path) as reader:
        assert reader.read_region((0, 0), 0, (64, 64)).shape == (64, 64, 3)
