"""`wsitui run` on slides from other generators (tests/slides/foreign.py): TISSUE_MASK then
SEGMENT_CELLS (classical) run end to end on each, at the pixel size the file says, and find
the cells the same tissue holds in a lossless generic TIFF.

Every subprocess has a timeout (tests/headless/helpers.py): a hang fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.headless.helpers import write_config, wsitui
from tests.slides.foreign import Foreign, tissue_pixels, write_foreign

MPP = 0.499  # the sample tissue's own pixel size
CHAIN = (
    '  [[workflows.jobs]]\n  id = "m-{n}"\n  type = "TISSUE_MASK"\n  slide = "{slide}"\n'
    '  [[workflows.jobs]]\n  id = "c-{n}"\n  type = "SEGMENT_CELLS"\n  slide = "{slide}"\n'
    '  depends_on = ["m-{n}"]\n  params = {{ model = "classical" }}\n'
)
SLIDES = {
    # Lossless, mpp in cm: the reference count.
    "lossless": Foreign(
        aperio=None, compression="lzw", photometric="rgb", predictor=True, resolution=(MPP, "cm")
    ),
    # Aperio as scanners write it: JPEGTables, YCbCr 2x2, tile 240, odd levels 4 / 16.
    "svs-ycbcr": Foreign(tile=240, aperio="AppMag = 20|MPP = 0.4990|Left = 25.6"),
    # Aperio's RGB JPEG with JPEGTables, tile 256, MPP first and unspaced.
    "svs-rgb": Foreign(photometric="rgb", aperio="MPP=0.499|AppMag=20"),
    # A generic pyramid, the pixel size only in the resolution tags, in inches.
    "tif-inch": Foreign(
        aperio=None, compression="jpeg", photometric="rgb", resolution=(MPP, "inch")
    ),
    # No pixel size anywhere: the job assumes 0.5 and says so.
    "tif-no-mpp": Foreign(aperio=None, compression="deflate", photometric="rgb"),
}


def test_foreign_slides_run_mask_and_cells_end_to_end(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
):
    tissue = tissue_pixels(tmp_path_factory)[:767, :1023]  # odd: 4 x 3 tiles of 256
    slides = {
        n: write_foreign(tmp_path / f"{n}.{'svs' if spec.aperio else 'tif'}", tissue, spec)
        for n, spec in SLIDES.items()
    }
    results = _run_chains(tmp_path, slides)
    cells = {}
    for n in SLIDES:
        manifest = json.loads(next(results.glob(f"*/c-{n}/manifest.json")).read_text())
        cells[n] = manifest["cells"]
        assert manifest["tissue_source"] == f"upstream:m-{n}"
        if n == "tif-no-mpp":
            assert manifest["mpp"] == 0.5 and manifest["mpp_source"] == "assumed"
            assert "slide has no pixel size; assumed 0.5 µm/px" in manifest["warnings"]
        else:
            assert manifest["mpp"] == pytest.approx(MPP) and manifest["mpp_source"] == "slide", n
    # JPEG at quality 85 moves a few boundary pixels, not whole cells.
    assert cells["lossless"] > 50, cells
    for count in cells.values():
        assert abs(count - cells["lossless"]) <= 0.02 * cells["lossless"], cells


def test_an_ome_subifd_pyramid_gives_the_cells_of_the_same_pixels_as_svs(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
):
    """OpenSlide sees an OME-TIFF's level 0 only (its levels are SubIFDs); the tifffile
    reader reads every level. The mask and cells jobs on it read the coarse level the SVS of
    the same pixels (lossless, the same levels) gives them, and find the same cells."""
    tissue = tissue_pixels(tmp_path_factory)[:767, :1023]
    lossless = {"compression": "lzw", "photometric": "rgb", "predictor": True}
    slides = {
        "ome": write_foreign(
            tmp_path / "ome.ome.tif",
            tissue,
            Foreign(aperio=None, subifds=True, ome_mpp=MPP, downsamples=(1, 4), **lossless),
        ),
        "svs": write_foreign(
            tmp_path / "svs.svs",
            tissue,
            Foreign(aperio=f"AppMag = 20|MPP = {MPP}", downsamples=(1, 4), **lossless),
        ),
    }
    results = _run_chains(tmp_path, slides)
    found = {}
    for n in slides:
        mask = json.loads(next(results.glob(f"*/m-{n}/manifest.json")).read_text())
        cells = json.loads(next(results.glob(f"*/c-{n}/manifest.json")).read_text())
        found[n] = (mask["slide"]["level_dimensions"], mask["mask"], cells["mpp"], cells["cells"])
        backend = "tifffile" if n == "ome" else "tifffile+openslide"
        assert mask["slide"]["backend"] == cells["slide"]["backend"] == backend, n
    assert found["ome"][0] == [[1023, 767], [255, 191]]
    assert found["ome"][1]["level_read"] == 1  # not level 0, reduced
    assert found["ome"][2] == pytest.approx(MPP)
    assert found["ome"][3] > 20, found
    assert found["ome"] == found["svs"]


def _run_chains(tmp_path: Path, slides: dict[str, Path]) -> Path:
    """`wsitui run` of a mask and a cells job on each of `slides` (named); all must succeed;
    the tenant's results folder."""
    body = '[[workflows]]\ntenant = "t"\nname = "w"\n'
    for n, slide in slides.items():
        body += CHAIN.format(n=n, slide=slide)
    config = write_config(tmp_path / "c.toml", body)
    out = wsitui("run", config, "--data-dir", tmp_path / "data", "--json")
    assert out.returncode == 0, out.stderr
    (wf,) = json.loads(out.stdout)["workflows"]
    assert {j["key"]: j["state"] for j in wf["jobs"]} == {
        f"{k}-{n}": "SUCCEEDED" for n in slides for k in "mc"
    }
    return tmp_path / "data" / "results" / "t"
