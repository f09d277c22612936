"""Shards that lie: copied over another tile's, corrupt, crafted, foreign, or written late by a
run the engine abandoned. None is trusted; each is redone (and counted), never a traceback."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from wsitui.jobs.common.files import Fenced, commit_fence, write_atomic
from wsitui.jobs.common.shards import MAGIC, ShardOwner, ShardStore
from wsitui.jobs.segment_cells.extract import CellRecords

PLAN = {"slide": "a.svs", "slide_size": 123, "tile_size": 512}


def records(n: int, seed: int) -> CellRecords:
    rng = np.random.default_rng(seed)
    rings = [rng.random((6, 2)) * 10 + i * 20 for i in range(n)]
    starts = np.zeros(n + 1, np.int64)
    starts[1:] = np.cumsum([len(r) for r in rings])
    return CellRecords(
        xy=np.concatenate(rings),
        starts=starts,
        centroid=rng.random((n, 2)),
        area=rng.random(n),
        perimeter=rng.random(n),
        status=np.zeros(n, np.uint8),
        depth=rng.random(n),
    )


def store(root: Path, job: str = "w1.cells", attempt: int = 1, **kw: object) -> ShardStore:
    return ShardStore(
        root, PLAN, owner=ShardOwner(job, attempt), check=CellRecords.from_bytes, **kw
    )


def forge(root: Path, key: str, payload: bytes, job: str = "w1.cells") -> None:
    """A shard whose record and checksum match its (bad) payload: only decoding can tell."""
    ShardStore(root, PLAN, owner=ShardOwner(job, 1)).put_bytes(key, payload)


def test_a_shard_copied_over_another_tiles_is_redone_not_used(tmp_path: Path):
    s = store(tmp_path)
    s.put_bytes("t0_0", records(3, 0).to_bytes())
    s.put_bytes("t1_0", records(5, 1).to_bytes())
    (tmp_path / "t0_0.bin").write_bytes((tmp_path / "t1_0.bin").read_bytes())
    again = store(tmp_path)
    assert not again.has("t0_0") and again.get_bytes("t0_0") is None
    assert again.has("t1_0")
    assert again.stats.redone == 1 and again.stats.reused == 1
    assert not (tmp_path / "t0_0.bin").exists()  # gone: its tile is segmented again


@pytest.mark.parametrize("damage", ["flip", "truncate", "legacy", "bad_crc", "pickled", "junk"])
def test_corrupt_shards_are_redone_never_a_decoder_traceback(tmp_path: Path, damage: str):
    good = records(4, 2).to_bytes()
    s = store(tmp_path)
    s.put_bytes("t2_3", good)
    path = tmp_path / "t2_3.bin"
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[-50] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "legacy":  # a shard from before records existed: bare npz
        path.write_bytes(good)
    elif damage == "bad_crc":  # a zip whose member fails its CRC-32, checksum forged to match
        bad = bytearray(good)
        at = bad.index(b"NUMPY") + 200  # inside the first member's data
        bad[at] ^= 0x55
        forge(tmp_path, "t2_3", bytes(bad))
    elif damage == "pickled":  # object arrays need pickle: never loaded
        buf = io.BytesIO()
        fields = {k: np.zeros(2) for k in CellRecords.__dataclass_fields__}
        fields["xy"] = np.array([{"x": 1}, None], dtype=object)
        np.savez(buf, **fields)
        forge(tmp_path, "t2_3", buf.getvalue())
    else:
        forge(tmp_path, "t2_3", b"PK\x03\x04 not a zip at all")
    again = store(tmp_path)
    assert again.get_bytes("t2_3") is None and not again.has("t2_3")
    assert again.stats.redone == 1
    assert not path.exists()


def test_a_shard_of_another_job_or_plan_is_not_used(tmp_path: Path):
    store(tmp_path, job="w1.cells").put_bytes("t0_0", records(2, 3).to_bytes())
    assert store(tmp_path, job="w2.cells").get_bytes("t0_0") is None
    store(tmp_path).put_bytes("t0_0", records(2, 3).to_bytes())
    # Same plan.json, but the shard's own record names another plan (copied from elsewhere).
    other = ShardStore(tmp_path / "o", {**PLAN, "tile_size": 256}, owner=ShardOwner("w1.cells", 1))
    other.put_bytes("t0_0", records(2, 3).to_bytes())
    (tmp_path / "t0_0.bin").write_bytes((tmp_path / "o" / "t0_0.bin").read_bytes())
    s = store(tmp_path)
    assert s.get_bytes("t0_0") is None and s.stats.redone == 1


def test_a_retry_reuses_the_shards_of_an_earlier_attempt_and_counts_them(tmp_path: Path):
    first = store(tmp_path, attempt=1)
    for i in range(3):
        first.put_bytes(f"t{i}_0", records(2, i).to_bytes())
    retry = store(tmp_path, attempt=2)
    assert retry.reused and all(retry.has(f"t{i}_0") for i in range(3))
    retry.put_bytes("t3_0", records(2, 9).to_bytes())  # its own work is not "reused"
    assert retry.has("t3_0")
    assert retry.stats.as_dict() == {"reused": 3, "reused_from_earlier_attempts": 3, "redone": 0}
    record = json.loads((tmp_path / "t3_0.bin").read_bytes()[len(MAGIC) :].split(b"\n", 1)[0])
    assert record["job"] == "w1.cells" and record["attempt"] == 2 and record["key"] == "t3_0"


def test_tissue_style_array_shards_keep_working(tmp_path: Path):
    s = ShardStore(tmp_path, {"p": 1})  # TISSUE_MASK's call: no owner, no check
    s.put_array("band_0", np.arange(6).reshape(2, 3))
    again = ShardStore(tmp_path, {"p": 1})
    assert again.reused
    np.testing.assert_array_equal(again.get_array("band_0"), np.arange(6).reshape(2, 3))
    raw = bytearray((tmp_path / "band_0.npy").read_bytes())
    raw[-1] ^= 1
    (tmp_path / "band_0.npy").write_bytes(bytes(raw))
    assert ShardStore(tmp_path, {"p": 1}).get_array("band_0") is None


def test_writes_of_a_run_asked_to_stop_do_not_commit(tmp_path: Path):
    stopped = [False]
    s = store(tmp_path, fence=lambda: stopped[0])
    s.put_bytes("t0_0", records(1, 0).to_bytes())
    with commit_fence(lambda: stopped[0]):
        write_atomic(tmp_path / "a.txt", b"before")
        stopped[0] = True
        with pytest.raises(Fenced):
            write_atomic(tmp_path / "b.txt", b"after")
    with pytest.raises(Fenced):
        s.put_bytes("t1_0", records(1, 1).to_bytes())
    write_atomic(tmp_path / "c.txt", b"outside any run")  # no fence: plain atomic write
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a.txt", "c.txt", "plan.json", "t0_0.bin"]  # no partials either


def test_a_stopped_run_neither_resets_nor_deletes_the_shards_of_its_retry(tmp_path: Path):
    retry = store(tmp_path, attempt=2)
    retry.put_bytes("t0_0", records(2, 0).to_bytes())
    (tmp_path / "t1_0.bin").write_bytes(b"junk a late reader would delete")
    with pytest.raises(Fenced):  # another plan: it would empty the directory
        ShardStore(tmp_path, {"other": 1}, fence=lambda: True)
    late = store(tmp_path, attempt=1, fence=lambda: True)
    assert late.get_bytes("t1_0") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json", "t0_0.bin", "t1_0.bin"]
