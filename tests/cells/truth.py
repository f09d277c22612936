"""Detection F1 of a SEGMENT_CELLS result against a sample slide's ground truth, by centroids:
a detection matches a true nucleus when their centroids are within `radius` level-0 px, each
matched at most once (greedy, closest pairs first). Shared by the tests and the benchmark."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from wsitui.slides.sample import load_truth


@dataclass(frozen=True, slots=True)
class CentroidScore:
    tp: int
    fp: int
    fn: int

    @property
    def f1(self) -> float:
        return 2 * self.tp / max(1, 2 * self.tp + self.fp + self.fn)


def match_centroids(pred: np.ndarray, true: np.ndarray, radius: float = 6.0) -> CentroidScore:
    if len(pred) == 0 or len(true) == 0:
        return CentroidScore(0, len(pred), len(true))
    pairs = cKDTree(pred).sparse_distance_matrix(cKDTree(true), radius, output_type="ndarray")
    order = np.argsort(pairs["v"], kind="stable")
    used_p, used_t = np.zeros(len(pred), bool), np.zeros(len(true), bool)
    tp = 0
    for k in order:
        i, j = pairs["i"][k], pairs["j"][k]
        if not used_p[i] and not used_t[j]:
            used_p[i] = used_t[j] = True
            tp += 1
    return CentroidScore(tp, len(pred) - tp, len(true) - tp)


def cells_centroids(results_dir: Path) -> np.ndarray:
    with (results_dir / "cells.csv").open() as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r["centroid_x_px"]), float(r["centroid_y_px"])] for r in rows])


def score_against_truth(results_dir: Path, slide: Path, radius: float = 6.0) -> CentroidScore:
    truth = load_truth(slide)
    return match_centroids(cells_centroids(results_dir), truth.nuclei[:, :2], radius)
