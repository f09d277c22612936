"""ResultsDirs: `results_dir` for thousands of jobs at once (`wsitui status`, `--json`) with the
same answers and refusals, resolving each workflow's dir once instead of every job's path."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsitui.core.paths import ResultsDirs, results_dir


def test_same_paths_and_refusals_as_results_dir(tmp_path):
    root = tmp_path / "results"
    (root / "alice" / "wf1" / "done").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "alice" / "wf1" / "inside").symlink_to(root / "alice" / "wf1" / "done")
    (root / "alice" / "wf1" / "escape").symlink_to(outside)
    (root / "mallory").symlink_to(outside)  # a whole tenant dir pointing out
    dirs = ResultsDirs(root)
    for tenant, wf, key in [
        ("alice", "wf1", "done"),  # exists
        ("alice", "wf1", "later"),  # not made yet
        ("alice", "wf2", "x"),  # nor its workflow
        ("alice", "wf1", "inside"),  # a symlink that stays inside: its target
    ]:
        assert dirs(tenant, wf, key) == results_dir(root, tenant, wf, key)
    for tenant, wf, key in [
        ("alice", "wf1", "escape"),
        ("mallory", "wf1", "x"),
        ("alice", "wf1", ".."),
        ("alice", "../wf1", "x"),
    ]:
        with pytest.raises(ValueError):
            results_dir(root, tenant, wf, key)
        with pytest.raises(ValueError):
            dirs(tenant, wf, key)


def test_each_workflow_dir_is_resolved_once_not_each_job(tmp_path, monkeypatch):
    # `wsitui status` of 3,000 jobs spent ~0.2 s resolving every job's path component by
    # component; a summary now resolves the root and one dir per workflow.
    calls = []
    real = Path.resolve

    def counting(self: Path, strict: bool = False) -> Path:
        calls.append(self)
        return real(self, strict)

    monkeypatch.setattr(Path, "resolve", counting)
    dirs = ResultsDirs(tmp_path / "results")
    for wf in range(3):
        for job in range(500):
            dirs("alice", f"wf{wf}", f"job{job}")
    assert len(calls) == 1 + 3
