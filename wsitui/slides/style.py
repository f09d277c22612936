"""How a synthetic slide looks: stains, textures, edges, nuclei, optics. Content comes from the
seed; the look comes from a `SampleStyle`.

`DEFAULT_STYLE` is the look the generator always had (its slides and seeded truth are
unchanged). `random_style(rng)` draws a wide variation around real H&E: stain colours from
perturbed Ruifrok-Johnston stain vectors and concentrations (Beer-Lambert), grainy eosin with
small white lumens, soft tissue edges, nuclei of other densities, sizes, shapes, darkness and
overlap, focus blur, noise and JPEG quality. A model trained on generated images should see
many looks, not learn one. Named looks (`STYLES`) are what `wsitui sample --style NAME` and
the tests use.

Sizes are in level-0 px of the sample slides (MPP 0.499 µm/px); `render_patch` scales them to
its own pixel size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

RGB = tuple[float, float, float]

# Optical density vectors of the stains (Ruifrok & Johnston 2001), normalised.
HEMATOXYLIN_OD = (0.650, 0.704, 0.286)
EOSIN_OD = (0.072, 0.990, 0.105)


def stain_rgb(stains: list[tuple[tuple[float, float, float], float]], light: float = 243.0) -> RGB:
    """Colour of light `light` through stains [(OD vector, concentration)] (Beer-Lambert)."""
    od = np.zeros(3)
    for vec, conc in stains:
        v = np.asarray(vec, np.float64)
        od += conc * v / np.linalg.norm(v)
    rgb = light * np.power(10.0, -od)
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))


@dataclass(frozen=True, slots=True)
class SampleStyle:
    name: str = "default"
    # Colours (RGB 0-255): glass, eosin-stained tissue from light to dark, nuclei light to dark.
    glass: RGB = (243.0, 243.0, 241.0)
    eosin_light: RGB = (236.0, 178.0, 208.0)
    eosin_dark: RGB = (214.0, 128.0, 178.0)
    nucleus_light: RGB = (128.0, 78.0, 166.0)
    nucleus_dark: RGB = (72.0, 40.0, 122.0)
    # Eosin texture: grains (bright/dark speckle of `grain_px` size, +-grain amplitude in grey
    # levels) and small white lumens (per mm² of tissue, radius range in µm). Lumens are
    # drawn inside tissue and count as tissue in the truth, as a pathologist draws it.
    grain: float = 0.0
    grain_px: float = 3.0
    lumens_per_mm2: float = 0.0
    lumen_radius_um: tuple[float, float] = (8.0, 30.0)
    lumen_color: RGB = (238.0, 232.0, 236.0)
    # Soft tissue edges: the stain fades over this many µm across the true edge (0: sharp).
    soft_edge_um: float = 0.0
    # Nuclei: slot probability (12 slots per 64-µm cell), semi-axes in px (major from a range,
    # minor from minor_min up to the major), minimum gap in px between bounding circles
    # (negative: nuclei overlap; the later one is drawn on top, as the truth labels say).
    nucleus_density: float = 0.75
    nucleus_major_px: tuple[float, float] = (4.0, 9.0)
    nucleus_minor_min_px: float = 4.0
    nucleus_gap_px: float = 1.5
    # Optics and file: Gaussian blur sigma in px (focus), noise std in grey levels on glass,
    # tissue and nuclei, and the JPEG quality of the stored tiles.
    blur_px: float = 0.0
    noise_glass: float = 2.0
    noise_tissue: float = 7.0
    noise_nucleus: float = 9.0
    jpeg_quality: int = 80
    # Since the wide training looks (all off by default, so the default look is unchanged):
    # nuclei per 64-µm cell at density 1; chromatin grain in nuclei (+- grey levels);
    # cytoplasm drawn around each nucleus (its ellipse times `cytoplasm_scale`, colour
    # multiplied in with `cytoplasm_alpha`: eosin or brown DAB); and things that are not
    # nuclei, per mm² of tissue: fibres (collagen bundles, keratin, folds, ink streaks;
    # wavy bands) and blobs (DAB, pigment, red cells, ink; irregular discs).
    nucleus_slots: int = 12
    nucleus_texture: float = 0.0
    cytoplasm_color: RGB = (255.0, 255.0, 255.0)
    cytoplasm_scale: float = 0.0
    cytoplasm_alpha: float = 0.0
    fibres_per_mm2: float = 0.0
    fibre_color: RGB = (200.0, 90.0, 150.0)
    fibre_width_um: tuple[float, float] = (1.5, 5.0)
    fibre_length_um: tuple[float, float] = (30.0, 150.0)
    fibre_alpha: float = 0.8
    blobs_per_mm2: float = 0.0
    blob_color: RGB = (150.0, 100.0, 60.0)
    blob_radius_um: tuple[float, float] = (2.0, 10.0)
    blob_alpha: float = 0.85
    # Since the tumour looks (all off by default): a share of nuclei drawn big (major semi-axis
    # from `nucleus_big_px`: 14-25 µm nuclei at 0.5 µm/px), vesicular (`nucleus_vesicular` 0-1:
    # a pale interior with chromatin at the membrane and in clumps, and a nucleolus);
    # cytoplasm of blotchy strength (`cytoplasm_texture` 0-1); nuclei in nests
    # (`nucleus_clustering` 0-1: the density varies over ~200 µm, up to twice the look's
    # density in nests, down to none between).
    nucleus_big_share: float = 0.0
    nucleus_big_px: tuple[float, float] = (14.0, 25.0)
    nucleus_vesicular: float = 0.0
    nucleolus_color: RGB = (110.0, 40.0, 110.0)
    cytoplasm_texture: float = 0.0
    nucleus_clustering: float = 0.0
    # Since the vesicular looks (all off by default, so every earlier look is unchanged): what
    # real vesicular tumour nuclei have. `vesicular_tone` 0-1: how far the pale interior goes
    # towards the colour under the nucleus (cytoplasm, eosin) rather than the glass: real
    # interiors are about as pale as the cytoplasm around them. `membrane_px` > 0: the
    # chromatin rim is a crisp line this wide (px) instead of a soft band over the outer
    # fifth. `chromatin_clumps` 0-1: share of the interior covered by coarse dark chromatin
    # clumps (~1-2 µm, the rim's colour). `nucleoli`: up to this many nucleoli (1-3, from the
    # nucleus' own parameters). `cytoplasm_grain` 0-1: dark granular speckle in the cytoplasm
    # (up to this far towards the darkest nucleus colour), so speckle alone makes no nucleus.
    vesicular_tone: float = 0.0
    membrane_px: float = 0.0
    chromatin_clumps: float = 0.0
    nucleoli: int = 1
    cytoplasm_grain: float = 0.0
    # Since the speck looks (off by default, so every earlier look is unchanged): small pale
    # purple things that are not nuclei (cytoplasm granules, mucin droplets, debris, pale
    # nucleus-sized blobs), per mm² of tissue, irregular discs like `blobs`, a second kind in
    # the same look (`speck_color` multiplied in with `speck_alpha`). See `with_specks`.
    specks_per_mm2: float = 0.0
    speck_color: RGB = (200.0, 170.0, 215.0)
    speck_radius_um: tuple[float, float] = (0.6, 2.0)
    speck_alpha: float = 0.8

    def __post_init__(self) -> None:
        problems = []
        a0, a1 = self.nucleus_major_px
        if not 1.0 <= a0 <= a1 <= 30.0:
            problems.append("nucleus_major_px must be 1 <= min <= max <= 30")
        if not 0.5 <= self.nucleus_minor_min_px <= a1:
            problems.append("nucleus_minor_min_px must be 0.5 up to the largest major axis")
        if not 0.0 <= self.nucleus_density <= 1.0:
            problems.append("nucleus_density must be 0-1")
        if not -a0 < self.nucleus_gap_px <= 20.0:
            problems.append("nucleus_gap_px must be above minus the smallest major axis")
        r0, r1 = self.lumen_radius_um
        if not 1.0 <= r0 <= r1 <= 60.0:
            problems.append("lumen_radius_um must be 1 <= min <= max <= 60")
        if not 0 <= self.lumens_per_mm2 <= 200 or not 0 <= self.soft_edge_um <= 500:
            problems.append("lumens_per_mm2 must be 0-200 and soft_edge_um 0-500")
        if not 0 <= self.blur_px <= 8 or not 1 <= self.grain_px <= 32 or self.grain < 0:
            problems.append("blur_px must be 0-8, grain_px 1-32, grain >= 0")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append("jpeg_quality must be 1-100")
        if not 1 <= self.nucleus_slots <= 64 or self.nucleus_texture < 0:
            problems.append("nucleus_slots must be 1-64 and nucleus_texture >= 0")
        if self.cytoplasm_scale != 0 and not 1.0 <= self.cytoplasm_scale <= 4.0:
            problems.append("cytoplasm_scale must be 0 (none) or 1-4")
        w0, w1 = self.fibre_width_um
        l0, l1 = self.fibre_length_um
        b0, b1 = self.blob_radius_um
        if not (0.3 <= w0 <= w1 <= 60 and 1 <= l0 <= l1 <= 400 and 0.3 <= b0 <= b1 <= 60):
            problems.append("fibre_width_um 0.3-60, fibre_length_um 1-400, blob_radius_um 0.3-60")
        if not (0 <= self.fibres_per_mm2 <= 2000 and 0 <= self.blobs_per_mm2 <= 5000):
            problems.append("fibres_per_mm2 must be 0-2000 and blobs_per_mm2 0-5000")
        alphas = (self.cytoplasm_alpha, self.fibre_alpha, self.blob_alpha)
        if not all(0 <= a <= 1 for a in alphas):
            problems.append("cytoplasm_alpha, fibre_alpha and blob_alpha must be 0-1")
        g0, g1 = self.nucleus_big_px
        if not 1.0 <= g0 <= g1 <= 60.0 or not 0 <= self.nucleus_big_share <= 1:
            problems.append("nucleus_big_px must be 1 <= min <= max <= 60, its share 0-1")
        unit = (self.nucleus_vesicular, self.cytoplasm_texture, self.nucleus_clustering)
        if not all(0 <= v <= 1 for v in unit):
            problems.append("nucleus_vesicular, cytoplasm_texture, nucleus_clustering: 0-1")
        if not 0 <= self.vesicular_tone <= 1 or not 0 <= self.chromatin_clumps <= 1:
            problems.append("vesicular_tone and chromatin_clumps must be 0-1")
        if not 0 <= self.membrane_px <= 8 or not 1 <= self.nucleoli <= 3:
            problems.append("membrane_px must be 0-8 and nucleoli 1-3")
        if not 0 <= self.cytoplasm_grain <= 1:
            problems.append("cytoplasm_grain must be 0-1")
        k0, k1 = self.speck_radius_um
        if not 0 <= self.specks_per_mm2 <= 5000 or not 0.3 <= k0 <= k1 <= 60:
            problems.append("specks_per_mm2 must be 0-5000 and speck_radius_um 0.3-60")
        if not 0 <= self.speck_alpha <= 1:
            problems.append("speck_alpha must be 0-1")
        if problems:
            raise ValueError(f"style {self.name!r}: {'; '.join(problems)}")

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_STYLE

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SampleStyle:
        raw: dict[str, Any] = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in names}
        )


DEFAULT_STYLE = SampleStyle()


def random_style(rng: np.random.Generator, name: str = "random") -> SampleStyle:
    """A style drawn with wide variation around real H&E (see the module docstring)."""

    def jitter(vec: tuple[float, float, float], amount: float) -> tuple[float, float, float]:
        v = np.clip(np.asarray(vec) + rng.normal(0, amount, 3), 0.01, None)
        v = v / np.linalg.norm(v)
        return (float(v[0]), float(v[1]), float(v[2]))

    h_vec, e_vec = jitter(HEMATOXYLIN_OD, 0.08), jitter(EOSIN_OD, 0.08)
    light = float(rng.uniform(232, 250))
    glass_tint = rng.normal(0, 2.0, 3)
    glass = tuple(float(np.clip(light + t, 0, 255)) for t in glass_tint)
    e_lo = float(rng.uniform(0.05, 0.25))  # eosin OD: pale to strong
    e_hi = e_lo + float(rng.uniform(0.05, 0.35))
    h_bg = float(rng.uniform(0.0, 0.08))  # hematoxylin counterstain in the eosin
    h_lo = float(rng.uniform(0.35, 0.7))
    h_hi = h_lo + float(rng.uniform(0.1, 0.5))
    a0 = float(rng.uniform(3.0, 6.0))
    a1 = a0 + float(rng.uniform(1.5, 6.0))
    soft = float(rng.choice([0.0, rng.uniform(10, 150)]))
    return SampleStyle(
        name=name,
        glass=glass,  # type: ignore[arg-type]
        eosin_light=stain_rgb([(e_vec, e_lo), (h_vec, h_bg)], light),
        eosin_dark=stain_rgb([(e_vec, e_hi), (h_vec, h_bg * 1.5)], light),
        nucleus_light=stain_rgb([(h_vec, h_lo), (e_vec, e_lo * 0.5)], light),
        nucleus_dark=stain_rgb([(h_vec, h_hi), (e_vec, e_lo * 0.5)], light),
        grain=float(rng.choice([0.0, rng.uniform(4, 22)])),
        grain_px=float(rng.uniform(1.5, 5.0)),
        lumens_per_mm2=float(rng.choice([0.0, rng.uniform(5, 60)])),
        lumen_radius_um=(float(rng.uniform(4, 10)), float(rng.uniform(12, 35))),
        soft_edge_um=soft,
        nucleus_density=float(rng.uniform(0.3, 0.95)),
        nucleus_major_px=(a0, a1),
        nucleus_minor_min_px=float(rng.uniform(max(1.5, a0 * 0.35), a0)),
        nucleus_gap_px=float(rng.uniform(-0.4 * a0, 2.0)),
        blur_px=float(rng.choice([0.0, rng.uniform(0.3, 1.8)])),
        noise_glass=float(rng.uniform(1, 4)),
        noise_tissue=float(rng.uniform(3, 12)),
        noise_nucleus=float(rng.uniform(4, 14)),
        jpeg_quality=int(rng.integers(60, 96)),
    )


# Optical density vectors of other chromogens and of what is not a stain (normalised on use).
DAB_OD = (0.268, 0.570, 0.776)
FAST_RED_OD = (0.214, 0.851, 0.478)
KERATIN_OD = (0.10, 0.50, 0.86)  # orange-pink
PIGMENT_OD = (0.45, 0.58, 0.68)  # brown-black (melanin, haemosiderin)
INK_OD = ((0.58, 0.58, 0.58), (0.75, 0.45, 0.2), (0.7, 0.2, 0.7))  # black, blue, green
WIDE_CHOICES = ("he", "he", "he", "he", "ihc")


def wide_style(
    rng: np.random.Generator, name: str = "wide", ihc: bool | None = None
) -> SampleStyle:
    """A training look, wider than `random_style`: paler, smaller, denser, more elongated and
    more overlapping nuclei with chromatin grain; stronger and darker stroma; and, in most
    looks, things a nuclei model must ignore: collagen bundles, keratin, folds, ink, pigment,
    red cells, cytoplasm; one look in five is immunohistochemistry (haematoxylin
    counterstain, brown DAB or red chromogen in cytoplasm and blobs)."""

    def jitter(vec: tuple[float, float, float], amount: float) -> tuple[float, float, float]:
        v = np.clip(np.asarray(vec) + rng.normal(0, amount, 3), 0.01, None)
        v = v / np.linalg.norm(v)
        return (float(v[0]), float(v[1]), float(v[2]))

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    drawn_ihc = str(rng.choice(WIDE_CHOICES)) == "ihc"
    ihc = drawn_ihc if ihc is None else ihc
    h_vec, e_vec = jitter(HEMATOXYLIN_OD, 0.12), jitter(EOSIN_OD, 0.12)
    light = u(228, 250)
    glass = tuple(float(np.clip(light + t, 0, 255)) for t in rng.normal(0, 2.0, 3))
    if ihc:
        e_lo, e_hi = u(0.0, 0.04), 0.0
        e_hi = e_lo + u(0.0, 0.06)
        h_bg = u(0.03, 0.15)
        h_lo = u(0.15, 0.45)
    else:
        e_lo = u(0.05, 0.4)
        e_hi = e_lo + u(0.05, 0.5)
        h_bg = u(0.0, 0.15)
        h_lo = u(0.15, 0.7)
    h_hi = h_lo + u(0.1, 0.6)
    a0 = u(2.2, 6.5)
    a1 = a0 + u(1.0, 7.0)
    chromogen = jitter(DAB_OD if rng.random() < 0.75 else FAST_RED_OD, 0.06)
    # Cytoplasm: eosin (H&E) or chromogen (IHC) around the nuclei, in some looks.
    cyto_vec, cyto_conc = (chromogen, u(0.2, 0.9)) if ihc else (e_vec, u(0.1, 0.5))
    cyto_on = rng.random() < (0.7 if ihc else 0.4)
    kind = int(rng.integers(0, 4))
    fibre_vec, fibre_conc, fibre_w = [
        (e_vec, u(0.2, 0.8), (u(1.0, 3.0), u(3.0, 12.0))),  # collagen bundles
        (jitter(KERATIN_OD, 0.1), u(0.2, 0.7), (u(2.0, 6.0), u(6.0, 20.0))),  # keratin
        (e_vec, u(0.3, 0.8), (u(10.0, 20.0), u(20.0, 50.0))),  # folds (doubled stain)
        (INK_OD[int(rng.integers(0, 3))], u(0.4, 1.6), (u(2.0, 10.0), u(10.0, 40.0))),  # ink
    ][kind]
    bkind = int(rng.integers(0, 4))
    blob_vec, blob_conc, blob_r = [
        (chromogen, u(0.3, 1.2), (u(2.0, 5.0), u(5.0, 15.0))),  # DAB / red chromogen
        (jitter(PIGMENT_OD, 0.08), u(0.5, 1.6), (u(0.4, 1.0), u(1.0, 4.0))),  # pigment
        (jitter(EOSIN_OD, 0.05), u(0.4, 0.9), (u(3.0, 3.5), u(3.5, 4.2))),  # red blood cells
        (INK_OD[int(rng.integers(0, 3))], u(0.5, 1.5), (u(1.0, 4.0), u(4.0, 20.0))),  # ink
    ][bkind]
    return SampleStyle(
        name=name,
        glass=glass,  # type: ignore[arg-type]
        eosin_light=stain_rgb([(e_vec, e_lo), (h_vec, h_bg)], light),
        eosin_dark=stain_rgb([(e_vec, e_hi), (h_vec, h_bg * 1.5)], light),
        nucleus_light=stain_rgb([(h_vec, h_lo), (e_vec, e_lo * 0.5)], light),
        nucleus_dark=stain_rgb([(h_vec, h_hi), (e_vec, e_lo * 0.5)], light),
        grain=float(rng.choice([0.0, u(4, 25)])),
        grain_px=u(1.2, 5.0),
        lumens_per_mm2=float(rng.choice([0.0, u(5, 80)])),
        lumen_radius_um=(u(3, 10), u(12, 40)),
        soft_edge_um=float(rng.choice([0.0, u(10, 150)])),
        nucleus_density=u(0.25, 1.0),
        nucleus_slots=int(rng.choice([12, 16, 24, 32])),
        nucleus_major_px=(a0, a1),
        nucleus_minor_min_px=u(max(1.2, a0 * 0.3), a0),
        nucleus_gap_px=u(-0.5 * a0, 2.0),
        nucleus_texture=float(rng.choice([0.0, u(5, 30)])),
        cytoplasm_color=stain_rgb([(cyto_vec, cyto_conc)], 255.0),
        cytoplasm_scale=u(1.5, 2.8) if cyto_on else 0.0,
        cytoplasm_alpha=u(0.4, 1.0),
        fibres_per_mm2=float(rng.choice([0.0, u(20, 400)])),
        fibre_color=stain_rgb([(fibre_vec, fibre_conc)], 255.0),
        fibre_width_um=fibre_w,
        fibre_length_um=(u(15, 60), u(60, 250)),
        fibre_alpha=u(0.5, 1.0),
        blobs_per_mm2=float(rng.choice([0.0, u(30, 1500 if bkind == 1 else 500)])),
        blob_color=stain_rgb([(blob_vec, blob_conc)], 255.0),
        blob_radius_um=blob_r,
        blob_alpha=u(0.6, 1.0),
        blur_px=float(rng.choice([0.0, u(0.3, 2.5)])),
        noise_glass=u(1, 4),
        noise_tissue=u(3, 14),
        noise_nucleus=u(4, 16),
        jpeg_quality=int(rng.integers(40, 96)),
    )


def tumour_style(rng: np.random.Generator, name: str = "tumour") -> SampleStyle:
    """A `wide_style` H&E look with what real tumour H&E has and the plain looks lack: a share of
    big (14-25 µm) vesicular nuclei with nucleoli among small ones, often in nests;
    haematoxylin-tinged, blotchy cytoplasm around them (purple, not only pink); and collagen
    with a haematoxylin tinge. Drawn from the same kind of perturbed stain vectors. In most
    looks the big nuclei are drawn as real vesicular nuclei are: an interior about as pale as
    the cytoplasm around it (not glass-white), a crisp thin chromatin rim, coarse dark
    chromatin clumps and 1-3 nucleoli; the cytoplasm often granular, and in some looks the
    cells packed so that purple cytoplasm fills the nest between them."""

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    base = wide_style(rng, name, ihc=False)
    h_vec = _unit(HEMATOXYLIN_OD, rng, 0.12)
    e_vec = _unit(EOSIN_OD, rng, 0.12)
    # Cytoplasm: eosin plus haematoxylin (purple).
    cyto = stain_rgb([(e_vec, u(0.05, 0.45)), (h_vec, u(0.03, 0.35))], 255.0)
    fibre = base.fibre_color
    if rng.random() < 0.5:  # collagen with a haematoxylin tinge
        fibre = stain_rgb([(e_vec, u(0.15, 0.6)), (h_vec, u(0.02, 0.15))], 255.0)
    g0 = u(10.0, 15.0)
    # Pale purple things that are not nuclei (condensed cytoplasm, mucin, debris): paler
    # than the look's palest nuclei, so darkness relative to the nuclei tells them apart.
    h_lo = u(0.15, 0.7)
    blobs = rng.random() < 0.5
    look = replace(
        base,
        nucleus_light=stain_rgb([(h_vec, h_lo), (e_vec, u(0.0, 0.2))], base.glass[0]),
        blobs_per_mm2=u(50, 600) if blobs else base.blobs_per_mm2,
        blob_color=stain_rgb([(h_vec, h_lo * u(0.25, 0.6)), (e_vec, u(0.05, 0.3))], 255.0)
        if blobs
        else base.blob_color,
        blob_radius_um=(u(1.5, 4.0), u(4.0, 9.0)) if blobs else base.blob_radius_um,
        blob_alpha=u(0.5, 1.0) if blobs else base.blob_alpha,
        nucleus_big_share=u(0.2, 0.9),
        nucleus_big_px=(g0, g0 + u(3.0, 12.0)),
        nucleus_vesicular=float(rng.choice([0.0, u(0.3, 1.0)], p=[0.25, 0.75])),
        nucleolus_color=stain_rgb([(h_vec, u(0.4, 1.0)), (e_vec, u(0.2, 0.8))], 255.0),
        nucleus_gap_px=u(-min(3.0, 0.5 * base.nucleus_major_px[0]), 2.0),
        nucleus_clustering=float(rng.choice([0.0, u(0.3, 1.0)])),
        cytoplasm_color=cyto,
        cytoplasm_scale=u(1.3, 3.5) if rng.random() < 0.85 else 0.0,
        cytoplasm_alpha=u(0.4, 1.0),
        cytoplasm_texture=float(rng.choice([0.0, u(0.2, 1.0)])),
        fibre_color=fibre,
    )
    # Drawn after the earlier fields so that those keep their values for a given rng.
    real = rng.random() < 0.75
    packed = rng.random() < 0.4
    nest = stain_rgb([(e_vec, u(0.1, 0.4)), (h_vec, u(0.05, 0.3))], look.glass[0])
    nest_dark = stain_rgb([(e_vec, u(0.3, 0.6)), (h_vec, u(0.15, 0.4))], look.glass[0])
    return replace(
        look,
        vesicular_tone=u(0.4, 1.0) if real else 0.0,
        membrane_px=u(0.7, 2.2) if real else 0.0,
        chromatin_clumps=u(0.1, 0.55) if real else 0.0,
        nucleoli=int(rng.integers(1, 4)),
        cytoplasm_grain=float(rng.choice([0.0, u(0.1, 0.5)])),
        # Packed: the cells fill the nest, so the tissue between nuclei is cytoplasm-coloured.
        eosin_light=nest if packed else look.eosin_light,
        eosin_dark=nest_dark if packed else look.eosin_dark,
        nucleus_gap_px=u(-1.0, 1.0) if packed else look.nucleus_gap_px,
        nucleus_density=u(0.7, 1.0) if packed else look.nucleus_density,
        cytoplasm_alpha=u(0.2, 0.6) if packed else look.cytoplasm_alpha,
    )


def dense_style(rng: np.random.Generator, name: str = "dense") -> SampleStyle:
    """A `wide_style` look crowded the way hard H&E is: many small-to-medium, often elongated
    nuclei packed into touching and partly overlapping pairs, triples and clusters (up to 64
    per 64-µm cell, in nests), some of them pale, in grainy eosin with lumens: where a
    model merges neighbours and misses the pale ones."""

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    base = wide_style(rng, name)
    a0 = u(2.5, 6.0)
    a1 = a0 + u(2.0, 6.0)
    return replace(
        base,
        nucleus_density=u(0.85, 1.0),
        nucleus_slots=int(rng.choice([48, 64])),
        nucleus_major_px=(a0, a1),
        nucleus_minor_min_px=u(max(1.2, a0 * 0.3), a0 * 0.8),
        nucleus_gap_px=u(-0.85 * a0, -0.2),
        nucleus_clustering=float(rng.choice([0.0, u(0.3, 1.0)])),
        grain=float(rng.choice([base.grain, u(8, 25)])),
        lumens_per_mm2=float(rng.choice([base.lumens_per_mm2, u(10, 80)])),
    )


def with_specks(style: SampleStyle, rng: np.random.Generator) -> SampleStyle:
    """`style` with pale purple things that are not nuclei added as its `specks`: either many
    small specks (1-4 µm across: cytoplasm granules, debris) or fewer nucleus-sized pale
    blobs (4-12 µm: mucin, condensed cytoplasm), 30-75 % (specks) or 20-50 % (blobs) of the
    optical density of the look's palest nuclei, so that only darkness relative to the nuclei
    (and, for the blobs, the lack of a rim and chromatin) tells them apart. What a model drew
    as specks and pale outlines in purple cytoplasm on real H&E. Draws from its own `rng`
    only."""
    glass = np.maximum(np.asarray(style.glass, np.float64), 1.0)
    light = np.clip(np.asarray(style.nucleus_light, np.float64), 1.0, None)
    od = np.clip(np.log10(glass / light), 0.0, None)
    small = rng.random() < 0.6
    share = float(rng.uniform(0.3, 0.75) if small else rng.uniform(0.2, 0.5))
    color = 255.0 * np.power(10.0, -od * share)
    if small:
        radius = (float(rng.uniform(0.5, 1.0)), float(rng.uniform(1.0, 2.2)))
        per_mm2 = float(rng.uniform(500, 2500))
    else:
        radius = (float(rng.uniform(2.0, 3.0)), float(rng.uniform(3.0, 6.0)))
        per_mm2 = float(rng.uniform(50, 400))
    return replace(
        style,
        specks_per_mm2=per_mm2,
        speck_color=(float(color[0]), float(color[1]), float(color[2])),
        speck_radius_um=radius,
        speck_alpha=float(rng.uniform(0.6, 1.0)),
    )


def dark_nest_style(rng: np.random.Generator, name: str = "dark_nest") -> SampleStyle:
    """A `tumour_style` look packed the way the real tumour H&E check image is where a model
    drew nothing: big (12-20 µm), often elongated, dark nuclei with little or no pale
    interior, pressed together in dark purple cytoplasm, so that a nucleus stands only a
    little darker than what surrounds it. Draws from its own `rng` only."""

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    base = tumour_style(rng, name)
    h_vec = _unit(HEMATOXYLIN_OD, rng, 0.1)
    e_vec = _unit(EOSIN_OD, rng, 0.1)
    light = base.glass[0]
    h_nest, e_nest = u(0.2, 0.45), u(0.2, 0.5)
    h_lo = h_nest + u(0.15, 0.35)
    g0 = u(6.0, 10.0)
    return replace(
        base,
        eosin_light=stain_rgb([(e_vec, e_nest), (h_vec, h_nest)], light),
        eosin_dark=stain_rgb([(e_vec, e_nest * 1.3), (h_vec, h_nest * 1.3)], light),
        nucleus_light=stain_rgb([(h_vec, h_lo), (e_vec, e_nest * 0.5)], light),
        nucleus_dark=stain_rgb([(h_vec, h_lo + u(0.2, 0.6)), (e_vec, e_nest * 0.5)], light),
        nucleus_big_share=u(0.4, 0.9),
        nucleus_big_px=(g0, g0 + u(3.0, 10.0)),
        nucleus_vesicular=float(rng.choice([0.0, u(0.1, 0.4)])),
        vesicular_tone=0.0,
        membrane_px=0.0,
        nucleus_density=u(0.85, 1.0),
        nucleus_slots=int(rng.choice([48, 64])),
        nucleus_major_px=(u(4.0, 6.0), u(7.0, 10.0)),
        nucleus_minor_min_px=u(3.0, 4.0),
        nucleus_gap_px=u(-2.0, 1.0),
        nucleus_clustering=0.0,
        cytoplasm_scale=0.0,
        lumens_per_mm2=float(rng.choice([0.0, u(5, 40)])),
    )


def _unit(vec: tuple[float, float, float], rng: np.random.Generator, amount: float) -> RGB:
    v = np.clip(np.asarray(vec) + rng.normal(0, amount, 3), 0.01, None)
    v = v / np.linalg.norm(v)
    return (float(v[0]), float(v[1]), float(v[2]))


# Looks the generator's default slides do not have; the tissue mask is tested on all of them.
STYLES: dict[str, SampleStyle] = {
    "default": DEFAULT_STYLE,
    # Grainy, pale eosin with many small white lumens and soft edges.
    "grainy": SampleStyle(
        name="grainy",
        eosin_light=(240.0, 200.0, 222.0),
        eosin_dark=(226.0, 160.0, 198.0),
        grain=18.0,
        grain_px=2.5,
        lumens_per_mm2=40.0,
        lumen_radius_um=(6.0, 28.0),
        soft_edge_um=40.0,
        noise_tissue=10.0,
        jpeg_quality=70,
    ),
    # Very soft edges fading into the glass, blur, small dense overlapping dark nuclei.
    "soft": SampleStyle(
        name="soft",
        glass=(246.0, 244.0, 245.0),
        eosin_light=(232.0, 170.0, 196.0),
        eosin_dark=(205.0, 120.0, 165.0),
        nucleus_light=(100.0, 70.0, 150.0),
        nucleus_dark=(50.0, 30.0, 100.0),
        soft_edge_um=120.0,
        lumens_per_mm2=10.0,
        nucleus_density=0.95,
        nucleus_major_px=(3.5, 7.0),
        nucleus_minor_min_px=2.5,
        nucleus_gap_px=-1.5,
        blur_px=1.2,
        jpeg_quality=65,
    ),
    # Strong stain, big elongated nuclei, sharp focus, high quality.
    "dark": SampleStyle(
        name="dark",
        eosin_light=(222.0, 140.0, 185.0),
        eosin_dark=(190.0, 90.0, 150.0),
        nucleus_light=(90.0, 55.0, 140.0),
        nucleus_dark=(40.0, 20.0, 90.0),
        grain=8.0,
        nucleus_density=0.6,
        nucleus_major_px=(6.0, 12.0),
        nucleus_minor_min_px=3.0,
        jpeg_quality=90,
    ),
    # Held-out looks of the model evaluation (training draws `wide_style` looks, never these).
    # Dense clusters of touching and overlapping, partly elongated nuclei with chromatin grain.
    "clustered": SampleStyle(
        name="clustered",
        eosin_light=(230.0, 160.0, 200.0),
        eosin_dark=(205.0, 115.0, 170.0),
        nucleus_light=(110.0, 70.0, 155.0),
        nucleus_dark=(55.0, 30.0, 105.0),
        grain=10.0,
        nucleus_density=0.95,
        nucleus_slots=48,
        nucleus_major_px=(4.5, 9.0),
        nucleus_minor_min_px=2.5,
        nucleus_gap_px=-3.5,
        nucleus_texture=12.0,
        blur_px=0.6,
        jpeg_quality=75,
    ),
    # Small pale nuclei in pale eosin, slightly out of focus.
    "pale": SampleStyle(
        name="pale",
        eosin_light=(240.0, 196.0, 220.0),
        eosin_dark=(228.0, 166.0, 202.0),
        nucleus_light=(150.0, 115.0, 185.0),
        nucleus_dark=(105.0, 72.0, 150.0),
        nucleus_density=0.8,
        nucleus_major_px=(2.5, 5.5),
        nucleus_minor_min_px=2.0,
        nucleus_gap_px=0.5,
        blur_px=0.7,
        jpeg_quality=70,
    ),
    # Stroma: dark pink collagen bundles, red blood cells and eosin cytoplasm between nuclei.
    "collagen": SampleStyle(
        name="collagen",
        eosin_light=(236.0, 170.0, 205.0),
        eosin_dark=(220.0, 135.0, 185.0),
        nucleus_light=(115.0, 70.0, 150.0),
        nucleus_dark=(60.0, 35.0, 105.0),
        nucleus_density=0.45,
        nucleus_major_px=(3.5, 10.0),
        nucleus_minor_min_px=1.8,
        nucleus_texture=8.0,
        cytoplasm_color=(225.0, 150.0, 200.0),
        cytoplasm_scale=2.0,
        cytoplasm_alpha=0.6,
        fibres_per_mm2=300.0,
        fibre_color=(215.0, 95.0, 160.0),
        fibre_width_um=(2.0, 8.0),
        fibre_length_um=(40.0, 200.0),
        fibre_alpha=0.85,
        blobs_per_mm2=150.0,
        blob_color=(235.0, 80.0, 95.0),
        blob_radius_um=(3.2, 4.0),
        jpeg_quality=80,
    ),
    # Immunohistochemistry: pale blue haematoxylin counterstain, brown DAB in the cytoplasm
    # around the nuclei and in blobs; no eosin.
    "ihc": SampleStyle(
        name="ihc",
        glass=(240.0, 240.0, 238.0),
        eosin_light=(222.0, 222.0, 232.0),
        eosin_dark=(205.0, 205.0, 222.0),
        nucleus_light=(130.0, 130.0, 185.0),
        nucleus_dark=(80.0, 85.0, 150.0),
        nucleus_density=0.7,
        nucleus_major_px=(3.5, 8.0),
        nucleus_minor_min_px=2.5,
        nucleus_gap_px=0.0,
        nucleus_texture=8.0,
        cytoplasm_color=(190.0, 140.0, 100.0),
        cytoplasm_scale=2.2,
        cytoplasm_alpha=0.9,
        blobs_per_mm2=120.0,
        blob_color=(160.0, 105.0, 65.0),
        blob_radius_um=(3.0, 12.0),
        jpeg_quality=80,
    ),
    # Held out: tumour nests of big (14-25 µm) vesicular nuclei with nucleoli among small dark
    # ones, in purple (haematoxylin-tinged) blotchy cytoplasm; pink stroma between.
    "tumour": SampleStyle(
        name="tumour",
        eosin_light=(232.0, 180.0, 210.0),
        eosin_dark=(212.0, 140.0, 185.0),
        nucleus_light=(120.0, 85.0, 165.0),
        nucleus_dark=(65.0, 40.0, 115.0),
        nucleus_density=0.55,
        nucleus_slots=16,
        nucleus_major_px=(3.5, 7.0),
        nucleus_minor_min_px=2.5,
        nucleus_gap_px=0.0,
        nucleus_texture=8.0,
        nucleus_big_share=0.5,
        nucleus_big_px=(14.0, 22.0),
        nucleus_vesicular=0.7,
        nucleolus_color=(120.0, 45.0, 120.0),
        nucleus_clustering=0.7,
        cytoplasm_color=(200.0, 150.0, 205.0),
        cytoplasm_scale=1.8,
        cytoplasm_alpha=0.8,
        cytoplasm_texture=0.6,
        blur_px=0.5,
        jpeg_quality=80,
    ),
    # Held out: packed nests of big vesicular nuclei drawn as real ones look: an interior about
    # as pale as the purple cytoplasm that fills the nest, a crisp thin chromatin rim, coarse
    # chromatin clumps, 1-3 nucleoli; granular cytoplasm; a few small dark nuclei between.
    "vesicular": SampleStyle(
        name="vesicular",
        eosin_light=stain_rgb([(EOSIN_OD, 0.18), (HEMATOXYLIN_OD, 0.16)]),
        eosin_dark=stain_rgb([(EOSIN_OD, 0.32), (HEMATOXYLIN_OD, 0.26)]),
        grain=12.0,
        grain_px=3.0,
        nucleus_light=stain_rgb([(HEMATOXYLIN_OD, 0.55), (EOSIN_OD, 0.1)]),
        nucleus_dark=stain_rgb([(HEMATOXYLIN_OD, 0.95), (EOSIN_OD, 0.1)]),
        nucleus_density=0.8,
        nucleus_slots=16,
        nucleus_major_px=(3.5, 7.0),
        nucleus_minor_min_px=2.5,
        nucleus_gap_px=0.5,
        nucleus_texture=10.0,
        nucleus_big_share=0.7,
        nucleus_big_px=(12.0, 19.0),
        nucleus_vesicular=0.9,
        nucleolus_color=stain_rgb([(HEMATOXYLIN_OD, 0.7), (EOSIN_OD, 0.5)], 255.0),
        nucleus_clustering=0.4,
        cytoplasm_color=stain_rgb([(EOSIN_OD, 0.15), (HEMATOXYLIN_OD, 0.12)], 255.0),
        cytoplasm_scale=1.7,
        cytoplasm_alpha=0.5,
        cytoplasm_texture=0.5,
        vesicular_tone=0.8,
        membrane_px=1.2,
        chromatin_clumps=0.3,
        nucleoli=3,
        cytoplasm_grain=0.3,
        blur_px=0.6,
        jpeg_quality=80,
    ),
}


def style_named(name: str) -> SampleStyle:
    """A named style; ValueError (one line) listing the names otherwise."""
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"style {name!r} is unknown; use one of: {', '.join(STYLES)}") from None
