"""A fast DEC sixel encoder: PIL's C quantizer, then every band encoded at once with numpy.

textual-image's encoder walks each 6-row band's colours in Python (~300 ms for a 1280 x 800
view); here the whole picture is a handful of array operations (tens of ms):

1. quantise with PIL (`Image.quantize`, no dither; FASTOCTREE by default, as textual-image);
2. per band and column, each colour's 6-bit sixel (36 row-against-row compares of the
   band array), one entry per (band, colour, column) painted, sorted by (band, colour) with a
   stable radix sort;
3. each (band, colour) row becomes runs of equal adjacent sixels with gaps of empty ones
   (`?`) between; a run of 4+ is `!N<c>`, a shorter one the char N times;
4. the output bytes are laid out by cumulative sums and written with array stores: per row
   `#c` (select), its runs, then `$` (back to the band's start) or `-` after the band's last.

Every colour definition `#n;2;r;g;b` is followed by a select `#n` (what xterm needs, see
wsitui.tui.widgets.sixel) and every row selects its colour, so nothing relies on a definition
selecting. Pure numpy + PIL: no Textual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_COLORS = 256
BAND = 6
RLE_MIN = 4  # `!4c` is shorter than `cccc`; `!3c` is not shorter than `ccc`

METHODS = {
    "fastoctree": Image.Quantize.FASTOCTREE,
    "maxcoverage": Image.Quantize.MAXCOVERAGE,
    "adaptive": Image.Quantize.MEDIANCUT,
}


@dataclass(frozen=True)
class Quantised:
    """A picture as palette indices (h, w) and its palette (k, 3) of 0-255 RGB."""

    index: np.ndarray
    palette: np.ndarray


def flatten(image: Image.Image, background: tuple[int, int, int, float] | None) -> Image.Image:
    """RGB, with any transparency composited on the background (black by default)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        r, g, b, a = background or (0, 0, 0, 1.0)
        rgba = image.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (r, g, b, int(a * 255)))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return image.convert("RGB")


def quantise(
    image: Image.Image,
    colors: int = MAX_COLORS,
    method: str = "fastoctree",
    background: tuple[int, int, int, float] | None = None,
) -> Quantised:
    rgb = flatten(image, background)
    q = rgb.quantize(colors=max(1, min(colors, MAX_COLORS)), method=METHODS[method], dither=0)
    index = np.asarray(q, dtype=np.uint8)
    k = int(index.max()) + 1 if index.size else 1
    pal = np.zeros(k * 3, np.int64)
    given = (q.getpalette() or [])[: k * 3]
    pal[: len(given)] = given
    return Quantised(index, pal.reshape(k, 3))


def percent(rgb: np.ndarray) -> np.ndarray:
    """0-255 -> the sixel colour's 0-100 (rounded)."""
    return (rgb.astype(np.int64) * 100 + 127) // 255


def _digits(values: np.ndarray) -> np.ndarray:
    n = np.ones_like(values)
    for p in (10, 100, 1000, 10000, 100000):
        n += values >= p
    return n


def _write_numbers(out: np.ndarray, pos: np.ndarray, values: np.ndarray, nd: np.ndarray) -> None:
    for d in range(int(nd.max()) if nd.size else 0):
        m = d < nd
        power = 10 ** (nd[m] - 1 - d)
        out[pos[m] + d] = 48 + (values[m] // power) % 10


def encode_indexed(q: Quantised) -> str:
    """The sixel string of a quantised picture (every pixel painted its palette colour)."""
    index = q.index
    h, w = index.shape
    k = len(q.palette)
    pct = percent(q.palette)
    header = (
        '\x1bP0;0;0q"1;1;'
        + f"{w};{h}"
        + "".join(f"#{i};2;{r};{g};{b}#{i}" for i, (r, g, b) in enumerate(pct.tolist()))
    )
    if h == 0 or w == 0:
        return header + "\x1b\\"
    n_bands = -(-h // BAND)
    idx = np.full((n_bands * BAND, w), -1, np.int16)  # -1: the rows below the picture
    idx[:h] = index
    bands = idx.reshape(n_bands, BAND, w)
    # Per band and column, each row's colour's sixel: the bits of the rows with that colour;
    # kept once, on the first row with the colour.
    sixel = np.zeros(bands.shape, np.uint8)
    keep = bands >= 0
    for r in range(BAND):
        for r2 in range(BAND):
            same = bands[:, r2] == bands[:, r]
            sixel[:, r] |= same.astype(np.uint8) << r2
            if r2 < r:
                keep[:, r] &= ~same
    # The painted (band, colour, column) cells in output order: band, column, then a stable
    # sort by band and colour keeps the columns in order within each (band, colour).
    per_col = np.ascontiguousarray(keep.transpose(0, 2, 1)).ravel()  # (band, column, row)
    f = np.flatnonzero(per_col).astype(np.int32)
    key = (f // (BAND * w)) * k + bands.transpose(0, 2, 1).ravel()[f]
    if n_bands * k <= 1 << 16:
        key = key.astype(np.uint16)  # numpy sorts 16-bit keys by radix
    order = np.argsort(key, kind="stable")
    f = f[order]
    row_id = key[order].astype(np.int32)  # band * k + colour
    col = (f // BAND) % w
    val = sixel.transpose(0, 2, 1).ravel()[f]
    # Runs of equal, adjacent, non-zero sixels; each is preceded by a gap of empty ones ('?').
    new_run = np.ones(len(col), bool)
    new_run[1:] = (row_id[1:] != row_id[:-1]) | (col[1:] != col[:-1] + 1) | (val[1:] != val[:-1])
    rs = np.flatnonzero(new_run).astype(np.int32)
    run_row, run_col = row_id[rs], col[rs]
    length = np.diff(rs, append=np.int32(len(col)))
    char = val[rs] + np.uint8(0x3F)
    first = np.ones(len(rs), bool)
    first[1:] = run_row[1:] != run_row[:-1]
    prev_end = np.empty_like(run_col)
    prev_end[0], prev_end[1:] = 0, run_col[:-1] + length[:-1]
    gap = np.where(first, run_col, run_col - prev_end)
    # Tokens: gap i, run i, ... (a gap of 0 writes nothing).
    t_len = np.empty(2 * len(rs), np.int32)
    t_len[0::2], t_len[1::2] = gap, length
    t_char = np.empty(2 * len(rs), np.uint8)
    t_char[0::2], t_char[1::2] = 0x3F, char
    t_row = np.repeat(np.arange(len(rs), dtype=np.int32), 2)
    long = t_len >= RLE_MIN
    nd_len = _digits(t_len)
    t_bytes = np.where(long, 2 + nd_len, t_len)
    # Row layout: "#c" + tokens + "$" (or "-" after the band's last colour).
    first_run = np.flatnonzero(first)
    rows_id = run_row[first_run]
    band_of, colour_of = np.divmod(rows_id, k)
    nd_col = _digits(colour_of)
    row_of_run = np.cumsum(first) - 1
    t_rowidx = row_of_run[t_row]
    t_cum = np.cumsum(t_bytes) - t_bytes
    row_tok = np.add.reduceat(t_bytes, 2 * first_run)
    row_bytes = 1 + nd_col + row_tok + 1
    row_off = np.cumsum(row_bytes) - row_bytes
    extra = np.cumsum(2 + nd_col) - 1  # the "#c" and "$" bytes up to a row's tokens
    out = np.zeros(int(row_bytes.sum()), np.uint8)
    out[row_off] = ord("#")
    _write_numbers(out, row_off + 1, colour_of, nd_col)
    last_in_band = np.r_[band_of[1:] != band_of[:-1], True]
    out[row_off + row_bytes - 1] = np.where(last_in_band, ord("-"), ord("$"))
    t_off = t_cum + extra[t_rowidx]
    lo = t_off[long]
    out[lo] = ord("!")
    _write_numbers(out, lo + 1, t_len[long], nd_len[long])
    out[lo + 1 + nd_len[long]] = t_char[long]
    short = ~long
    so, sl, sc = t_off[short], t_len[short], t_char[short]
    for j in range(RLE_MIN - 1):
        m = j < sl
        out[so[m] + j] = sc[m]
    return header + out.tobytes().decode("ascii") + "\x1b\\"


def encode(
    image: Image.Image,
    colors: int = MAX_COLORS,
    method: str = "fastoctree",
    background: tuple[int, int, int, float] | None = None,
) -> str:
    """Quantise and encode a PIL image as DEC sixel."""
    return encode_indexed(quantise(image, colors, method, background))
