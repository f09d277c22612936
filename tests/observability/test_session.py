"""Metrics endpoint and structured logs wired through the session `wsitui run` opens, and
admission refusals at the command line (exit 3, one line)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.headless.helpers import assert_one_line_error, one_job_config, wsitui
from wsitui.observability.setup import ObserveOptions
from wsitui.session.session import SessionOptions, prepare_session


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


@pytest.mark.anyio
async def test_a_session_serves_metrics_and_logs_json_with_ids(tmp_path: Path, sample_slide):
    config = one_job_config(tmp_path / "c.toml", sample_slide)
    log = tmp_path / "wsitui.log"
    session = prepare_session(
        SessionOptions(
            config=config,
            data_dir=tmp_path / "data",
            observe=ObserveOptions(metrics_port=0, log_file=log, log_json=True),
        )
    )
    server = session.observability.server
    assert server is not None and server.host == "127.0.0.1"  # loopback unless told
    try:
        async with session.open(start=True):
            engine = session.engine
            with anyio.fail_after(120):
                await engine.wait_idle()
            got = await anyio.to_thread.run_sync(samples, server.url)
            (job,) = engine.workflow("t", session.workflow_ids[0]).jobs
            ok = (("job_type", "TISSUE_MASK"), ("state", "SUCCEEDED"))
            assert got[("wsitui_jobs_finished_total", ok)] == 1
            tiles = got[("wsitui_tiles_processed_total", (("job_type", "TISSUE_MASK"),))]
            assert tiles == job.tiles_total > 0
            assert got[("wsitui_running_jobs", ())] == engine.stats().running == 0
            assert got[("wsitui_workers", (("state", "free"),))] == engine.stats().max_workers
    finally:
        session.close()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines, "nothing was logged"
    for line in lines:  # every line has the three id fields, null when not about a job
        assert {"ts", "level", "tenant", "workflow_id", "job_id", "message"} <= line.keys()
    job_lines = [x for x in lines if x.get("state") == "SUCCEEDED" and x["job_id"]]
    assert job_lines and job_lines[-1]["job_id"] == job.id
    assert job_lines[-1]["workflow_id"] == job.workflow_id and job_lines[-1]["tenant"] == "t"
    with pytest.raises(OSError):  # closed with the session: the port is free again
        urllib.request.urlopen(server.url, timeout=5)


def test_run_logs_text_with_ids_and_refuses_over_the_limit_with_exit_3(tmp_path, sample_slide):
    config = one_job_config(tmp_path / "c.toml", sample_slide)
    log = tmp_path / "run.log"
    out = wsitui("run", config, "--data-dir", tmp_path / "d", "--quiet", "--log-file", log,
                 "--metrics-port", "0")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # logs go to the file, not the terminal
    text = log.read_text().splitlines()
    assert any(" tenant=t workflow=wf" in x and " job=wf" in x and "SUCCEEDED" in x for x in text)
    # Two workflows of one tenant with a burst of 1: the second is refused as a whole.
    two = tmp_path / "two.toml"
    two.write_text(
        "[limits]\nburst = 1\nrate = 0.01\n"
        + one_job_config(tmp_path / "x.toml", sample_slide, name="a").read_text()
        + one_job_config(tmp_path / "y.toml", sample_slide, name="b").read_text()
    )
    refused = wsitui("run", two, "--data-dir", tmp_path / "d2", "--quiet")
    line = assert_one_line_error(refused, 3, "tenant t: rate limited, retry in", "[limits]")
    assert "Traceback" not in line


def test_log_json_without_a_file_goes_to_stderr_in_headless(tmp_path, sample_slide):
    config = one_job_config(tmp_path / "c.toml", sample_slide)
    out = wsitui("run", config, "--data-dir", tmp_path / "d", "--quiet", "--log-json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stderr.splitlines()]
    assert lines and all("job_id" in x and "tenant" in x for x in lines)
