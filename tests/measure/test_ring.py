"""The ring around a nucleus (QuPath's cell expansion): its width, and clipped at neighbours."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wsitui.jobs.measure_cells.measure import intensity_stats, ring_labels


def test_a_lone_nucleus_gets_a_full_ring() -> None:
    yy, xx = np.mgrid[0:100, 0:100]
    label = ((xx - 50) ** 2 + (yy - 50) ** 2 <= 10**2).astype(np.int32)
    ring = ring_labels(label, 5.0)
    assert not (ring & label).any()  # the ring excludes the nucleus
    assert (ring == 1).sum() == pytest.approx(math.pi * (15**2 - 10**2), rel=0.05)


def test_the_ring_is_clipped_half_way_to_a_neighbour() -> None:
    label = np.zeros((40, 60), np.int32)
    label[10:30, 10:24] = 1  # right edge at column 23
    label[10:30, 30:44] = 2  # left edge at column 30: 6 px between them
    ring = ring_labels(label, 5.0)
    gap = ring[20, 24:30]
    assert gap.tolist() == [1, 1, 1, 2, 2, 2]  # each pixel to its nearest nucleus
    assert ring[20, 5:10].tolist() == [1] * 5  # on the free side: the full 5 px
    assert ring[20, 4] == 0
    assert ring[20, 44:49].tolist() == [2] * 5
    # Without the neighbour, nucleus 1 would reach 5 px to the right
    alone = ring_labels(np.where(label == 1, 1, 0).astype(np.int32), 5.0)
    assert (alone == 1).sum() > (ring == 1).sum()


def test_intensity_stats_per_label() -> None:
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    labels = np.array([[1, 1, 0, 2], [1, 0, 0, 2], [0, 0, 0, 0]], np.int32)
    got = intensity_stats(values, labels, 3)
    assert got[0].tolist() == pytest.approx([np.mean([0, 1, 4]), np.std([0, 1, 4]), 0, 4])
    assert got[1].tolist() == pytest.approx([5.0, 2.0, 3, 7])
    assert np.isnan(got[2]).all()  # a label with no pixel: nothing measured
