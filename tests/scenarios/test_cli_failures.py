"""From outside (`wsitui run`, its JSONL log, `--json`): a failed job frees its tenant's slot
once nothing of the tenant can still run. A diamond whose middle fails: the other side and an
independent job run, the join is blocked (it holds no slot), the waiting tenant is admitted
only then, and the run exits 1 (README: Scheduling rules, Commands)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.core.oracle import check, missing_from_log, read_events
from tests.headless.helpers import corrupt_tiles, wsitui

DIAMOND = [  # (id, branch, depends_on, slide)
    ("top", "A", [], "good"),
    ("left", "B", ["top"], "broken"),
    ("right", "C", ["top"], "good"),
    ("join", "A", ["left", "right"], "good"),
    ("after", "A", [], "good"),
]


def test_a_failed_middle_blocks_the_join_and_frees_the_slot_for_the_waiting_tenant(
    tmp_path: Path, slides: tuple[Path, Path]
):
    broken = tmp_path / "broken.svs"
    corrupt_tiles(slides[1], broken)
    paths = {"good": slides[1], "broken": broken}
    text = '[scheduler]\nmax_workers = 2\nmax_active_users = 1\n[paths]\ndata_dir = "d"\n'
    text += 'events = "ev.jsonl"\n[[workflows]]\ntenant = "a"\nname = "w"\n'
    for key, branch, deps, slide in DIAMOND:
        text += (
            f'  [[workflows.jobs]]\n  id = "{key}"\n  type = "TISSUE_MASK"\n'
            f'  slide = "{paths[slide]}"\n  branch = "{branch}"\n'
            f"  depends_on = {json.dumps(deps)}\n"
        )
    text += '[[workflows]]\ntenant = "b"\nname = "w"\n  [[workflows.jobs]]\n  id = "b1"\n'
    text += f'  type = "TISSUE_MASK"\n  slide = "{slides[1]}"\n'
    (tmp_path / "c.toml").write_text(text)

    out = wsitui("run", tmp_path / "c.toml", "--json", cwd=tmp_path, timeout=300)
    assert out.returncode == 1, out.stderr
    events = list(read_events([tmp_path / "ev.jsonl"]))
    assert check(events, max_workers=2, max_active_users=1, strict=True).violations == []
    assert missing_from_log(events, tmp_path / "d" / "state.db") == []
    starts = [
        f"{e['tenant']}/{e['job_id'].split('.')[-1]}"
        for e in events
        if e["event"] == "job_state" and e["state"] == "RUNNING"
    ]
    assert sorted(starts) == ["a/after", "a/left", "a/right", "a/top", "b/b1"]
    assert starts[-1] == "b/b1"  # b waited until a had nothing that could run
    tenants = [(e["event"], e["tenant"]) for e in events if e["event"].startswith("tenant_")]
    assert tenants[0] == ("tenant_admitted", "a")
    assert tenants[-3:] == [
        ("tenant_released", "a"),
        ("tenant_admitted", "b"),
        ("tenant_released", "b"),
    ]
    summary = json.loads(out.stdout)
    jobs = {
        (w["tenant"], j["key"]): (j["state"], j["phase"])
        for w in summary["workflows"]
        for j in w["jobs"]
    }
    assert jobs[("a", "left")][0] == "FAILED"
    assert jobs[("a", "join")] == ("PENDING", "blocked")
    assert {jobs[("a", k)][0] for k in ("top", "right", "after")} == {"SUCCEEDED"}
    assert jobs[("b", "b1")][0] == "SUCCEEDED"
