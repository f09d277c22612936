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


def test_a_tiff_declaring_more_pixels_than_its_tiles_is_refused_at_open(tmp_path: Path):
    """Width and height tags edited up (150,000 px a side, under the pixel budget) while the
    page lists its 4 tiles: the slide opened, and the viewer's first read past the list was
    an IndexError. It is refused at open as damaged, in one line naming the counts."""
    import struct

    path = tmp_path / "edited.tif"
    tifffile.imwrite(path, np.full((512, 512, 3), 200, np.uint8), tile=(256, 256))
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        for name in ("ImageWidth", "ImageLength"):
            tag = page.tags[name]
            fmt = "<H" if tag.dtype == 3 else "<I"
            data[tag.valueoffset : tag.valueoffset + struct.calcsize(fmt)] = struct.pack(
                fmt, 60_000
            )
    path.write_bytes(bytes(data))
    with pytest.raises(SlideError) as err:
        open_slide(path)
    message = str(err.value)
    assert "\n" not in message and "lists 4" in message and "60,000x60,000" in message, message
