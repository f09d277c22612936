"""The code job types share: polygon tracing for QuPath, and shards."""

from pathlib import Path

import numpy as np
import pytest
import shapely

from wsitui.jobs.common.geojson import mask_polygons
from wsitui.jobs.common.shards import ShardStore


def rasterise(polys: list, shape: tuple[int, int], ds: tuple[float, float]) -> np.ndarray:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    union = shapely.union_all(polys)
    return shapely.contains_xy(union, (xs + 0.5) * ds[0], (ys + 0.5) * ds[1])


def grid(text: str) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in text.strip().split()], bool)


@pytest.mark.parametrize(
    "picture",
    [
        # A ring closed only through a diagonal pair: one 4-connected piece whose hole
        # touches the outside at a point (a ring touching itself, invalid unless split).
        """
        .....
        .##..
        .#.#.
        .###.
        .....
        """,
        # Diagonal neighbours are separate pieces that touch at a corner.
        """
        #..#
        .##.
        .##.
        #..#
        """,
        # An island inside a hole inside tissue, and a hole touching another at a corner.
        """
        #########
        #.......#
        #.#####.#
        #.#...#.#
        #.#.#.#.#
        #.#...#.#
        #.#####.#
        #.......#
        ###.#####
        ##.#.####
        #########
        """,
    ],
)
def test_traced_polygons_are_valid_and_give_the_mask_back(picture: str):
    mask = grid(picture)
    for ds in ((1.0, 1.0), (16.0, 12.5)):
        polys = mask_polygons(mask, ds)
        assert polys and all(p.is_valid and p.geom_type == "Polygon" for p in polys)
        np.testing.assert_array_equal(rasterise(polys, mask.shape, ds), mask)
        assert sum(p.area for p in polys) == pytest.approx(mask.sum() * ds[0] * ds[1])
        # RFC 7946 winding: shells counter-clockwise, holes clockwise.
        assert all(p.exterior.is_ccw and not any(i.is_ccw for i in p.interiors) for p in polys)


def test_pieces_and_holes_are_counted_as_a_pathologist_would():
    mask = grid(
        """
        #########
        #.......#
        #.#####.#
        #.#...#.#
        #.#.#.#.#
        #.#...#.#
        #.#####.#
        #.......#
        #########
        """
    )
    polys = sorted(mask_polygons(mask), key=lambda p: -p.area)
    assert [len(p.interiors) for p in polys] == [1, 1, 0]  # frame, ring, centre dot
    assert polys[2].bounds == (4.0, 4.0, 5.0, 5.0)


def test_no_tissue_no_polygons():
    assert mask_polygons(np.zeros((5, 7), bool)) == []
    full = mask_polygons(np.ones((3, 4), bool), (2.0, 2.0))
    assert len(full) == 1 and full[0].bounds == (0.0, 0.0, 8.0, 6.0)


def test_random_masks_round_trip():
    rng = np.random.default_rng(7)
    for _ in range(20):
        mask = rng.random((24, 31)) < 0.45
        polys = mask_polygons(mask)
        assert all(p.is_valid for p in polys)
        np.testing.assert_array_equal(rasterise(polys, mask.shape, (1.0, 1.0)), mask)


def test_shards_survive_a_resume_of_the_same_plan_only(tmp_path: Path):
    plan = {"slide": "a.svs", "level": 2, "bands": [[0, 10], [10, 20]]}
    store = ShardStore(tmp_path / "shards", plan)
    assert not store.reused
    store.put_array("band_0", np.arange(6).reshape(2, 3))
    again = ShardStore(tmp_path / "shards", dict(plan))
    assert again.reused
    np.testing.assert_array_equal(again.get_array("band_0"), np.arange(6).reshape(2, 3))
    assert again.get_array("band_10") is None
    other = ShardStore(tmp_path / "shards", {**plan, "level": 1})
    assert not other.reused and other.get_array("band_0") is None


def test_a_torn_shard_is_dropped_not_trusted(tmp_path: Path):
    store = ShardStore(tmp_path, {"p": 1})
    store.put_array("band_0", np.ones((4, 4)))
    (tmp_path / "band_0.npy").write_bytes((tmp_path / "band_0.npy").read_bytes()[:40])
    assert store.get_array("band_0") is None and not store.has("band_0")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(ValueError, match="not a safe file name"):
        store.put_array("../x", np.ones(1))
