"""`wsitui run --json` and `wsitui status --json` print the same job summary, phases included."""

from __future__ import annotations

import json

from tests.headless.helpers import bad_after_fine_config, wsitui


def test_run_and_status_print_the_same_summary_with_phases(tmp_path, slides):
    config = bad_after_fine_config(tmp_path, slides[1], slides[1])
    data = tmp_path / "data"
    run = wsitui("run", config, "--data-dir", data, "--json")
    assert run.returncode == 1, run.stderr
    (from_run,) = json.loads(run.stdout)["workflows"]
    status = wsitui("status", "--data-dir", data, "--json")
    assert status.returncode == 0, status.stderr
    (from_status,) = json.loads(status.stdout)
    assert from_status == from_run

    jobs = {j["key"]: j for j in from_run["jobs"]}
    assert (jobs["bad"]["phase"], jobs["bad"]["state"]) == ("failed", "FAILED")
    assert "broken.svs" in jobs["bad"]["reason"]
    after = jobs["after"]
    assert (after["state"], after["phase"]) == ("PENDING", "blocked")
    assert "bad" in after["reason"] and after["depends_on"] == [jobs["bad"]["id"]]
    assert jobs["fine"]["phase"] == "succeeded"
    for job in jobs.values():
        assert job["results_dir"].startswith(str(data / "results"))
        assert {"stage", "counters", "reason", "phase"} <= job.keys()
    assert from_run["state"] == "FAILED"


def test_status_table_names_the_phase_of_a_blocked_job(tmp_path, slides):
    config = bad_after_fine_config(tmp_path, slides[1], slides[1])
    data = tmp_path / "data"
    assert wsitui("run", config, "--data-dir", data, "--quiet").returncode == 1
    out = wsitui("status", "--data-dir", data)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if " after " in line)
    assert "PENDING (blocked)" in row and "upstream bad failed" in row
