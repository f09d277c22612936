"""The worker side: which loaded model a task uses."""

from __future__ import annotations


def test_a_model_file_changed_in_place_gets_a_new_worker_plugin(tmp_path):
    import os

    from wsitui.jobs.segment_cells.backends.dask_worker import plugin_name
    from wsitui.models.source import ModelSource

    path = tmp_path / "instanseg.pt"
    path.write_bytes(b"one")
    source = ModelSource("file", "m", path)
    before = plugin_name(source, "cpu", None)
    assert plugin_name(source, "cpu", None) == before  # same file: the loaded model is reused
    path.write_bytes(b"retrained")
    os.utime(path, ns=(1, 1))
    assert plugin_name(source, "cpu", None) != before
    assert plugin_name(source, "cuda", None) != plugin_name(source, "cpu", None)
