"""Cohort configs: globs and CSVs expand to one chain per slide; bad ones are one-line errors.

Expansion never opens a slide (an unopenable one fails only its own chain when it runs), so
the slide files here are placeholders except where a test says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cohorts import cohort_config
from tests.headless.helpers import assert_one_line_error, wsitui
from wsitui.session.cohort import (
    Cohort,
    _expand_one,
    _Stored,
    expand_cohorts,
    list_slides,
    new_slide_id,
)
from wsitui.session.config import ConfigError, load_config
from wsitui.session.errors import SessionError
from wsitui.session.session import SessionOptions, prepare_session


def touch(path: Path, data: bytes = b"placeholder") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_globs_expand_to_one_chain_per_slide_on_its_own_branch(tmp_path):
    for name in ("b.svs", "a.svs"):
        touch(tmp_path / "cohort" / name)
    touch(tmp_path / "more" / "c.ndpi")
    touch(tmp_path / "cohort" / "notes.txt")
    (tmp_path / "cohort" / "sub.svs").mkdir()  # a directory the glob matches: not a slide
    config = load_config(cohort_config(tmp_path, '["cohort/*.svs", "more/*.ndpi"]'))
    expanded, cohorts = expand_cohorts(config, tmp_path / "data")
    jobs = expanded.workflows[0].jobs
    assert [(j.id, j.branch, j.depends_on) for j in jobs] == [
        ("a-mask", "a", []),
        ("a-cells", "a", ["a-mask"]),
        ("b-mask", "b", []),
        ("b-cells", "b", ["b-mask"]),
        ("c-mask", "c", []),
        ("c-cells", "c", ["c-mask"]),
    ]
    assert [j.slide for j in jobs[::2]] == [
        (tmp_path / "cohort" / "a.svs").resolve(),
        (tmp_path / "cohort" / "b.svs").resolve(),
        (tmp_path / "more" / "c.ndpi").resolve(),
    ]
    assert jobs[1].params == {"model": "classical"}
    assert [s.id for s in cohorts[0].slides] == ["a", "b", "c"]
    assert cohorts[0].template == ("mask", "cells")


def test_a_csv_names_slides_relative_to_itself_and_keeps_its_columns_as_metadata(tmp_path):
    touch(tmp_path / "data" / "slides" / "x1.svs")
    touch(tmp_path / "data" / "slides" / "x2.svs")
    csv = tmp_path / "data" / "cohort.csv"
    csv.write_text("case,path,block\nC-7,slides/x2.svs,B1\nC-9,slides/x1.svs,B3\n")
    config = load_config(cohort_config(tmp_path, '"data/cohort.csv"'))
    _, cohorts = expand_cohorts(config, tmp_path / "state")
    cohort = cohorts[0]
    assert cohort.meta_columns == ("case", "block")
    assert [(s.id, s.path.name, s.meta) for s in cohort.slides] == [
        ("x2", "x2.svs", {"case": "C-7", "block": "B1"}),
        ("x1", "x1.svs", {"case": "C-9", "block": "B3"}),
    ]


@pytest.mark.parametrize(
    ("text", "meta"),
    [
        ("case;path;size\nC-7;slides/x,2.svs;1,5\n", {"case": "C-7", "size": "1,5"}),
        ('"case";"path"\r\n"C-7";"slides/x,2.svs"\r\n', {"case": "C-7"}),
        ("case\tpath\nC-7\tslides/x,2.svs\n", {"case": "C-7"}),
        ('path\n"slides/x,2.svs"\n', {}),  # one column: nothing to separate
        ('path,case\n"slides/x,2.svs",C-7,,\n', {"case": "C-7"}),  # empty extra fields
    ],
    ids=["semicolons", "quoted_semicolons_crlf", "tabs", "path_only", "trailing_commas"],
)
def test_a_csv_saved_with_semicolons_or_tabs_is_read_as_it_was_meant(tmp_path, text, meta):
    """A spreadsheet in a locale with a decimal comma saves `;`-separated CSV; it said only
    "has no `path` column (columns: case;path;size)". A comma in a value stays in it."""
    touch(tmp_path / "slides" / "x,2.svs")
    (tmp_path / "cohort.csv").write_text(text)
    config = load_config(cohort_config(tmp_path, '"cohort.csv"'))
    _, cohorts = expand_cohorts(config, tmp_path / "state")
    assert [(s.path.name, s.meta) for s in cohorts[0].slides] == [("x,2.svs", meta)]


def test_clashing_file_names_get_distinct_stable_ids(tmp_path):
    a = tmp_path / "one" / "slide 1.svs"
    b = tmp_path / "two" / "slide 1.svs"
    first = new_slide_id(a, set())
    second = new_slide_id(b, {first})
    assert first == "slide_1"
    assert second.startswith("slide_1-") and second != first
    assert new_slide_id(b, {first}) == second  # the same path: the same id


def _session_error(config: Path, tmp: Path) -> str:
    with pytest.raises(SessionError) as info:
        prepare_session(SessionOptions(config=config, data_dir=tmp / "data"))
    return info.value.message


@pytest.mark.parametrize(
    ("slides", "files", "csv", "expected"),
    [
        ('["cohort/*.svs"]', [], None, "slides glob"),
        ('["cohort/*.svs", "cohort/a*"]', ["cohort/a.svs"], None, "is listed twice"),
        ('"list.csv"', ["s.svs"], "slide,case\ns.svs,1\n", "has no `path` column"),
        # It said "add a header row with `path`" to a header that has one, capitalised.
        (
            '"list.csv"',
            ["s.svs"],
            "Path;case\ns.svs;1\n",
            "has no `path` column (columns: Path, case); rename `Path` to `path`",
        ),
        (
            '"list.csv"',
            ["s.svs"],
            "Path,case\ns.svs,1\n",
            "(columns: Path, case); rename `Path` to `path`",
        ),
        ('"list.csv"', ["s.svs"], "path\ns.svs\n./s.svs\n", "is listed twice (line 2 and line 3)"),
        ('"missing.csv"', [], None, "not found"),
        # csv.DictReader kept the last `path` column's values without a word.
        ('"list.csv"', ["a.svs", "b.svs"], "path,path\na.svs,b.svs\n", "has 2 `path` columns"),
        (
            '"list.csv"',
            ["a,b.svs"],
            "path,case\na,b.svs,1\n",
            "line 2 has more fields than its header (2); quote a value that holds the "
            "separator ',', e.g. \"a,b.svs\"",
        ),
        # A row naming no file said `job 'gone-mask': slide ... does not exist`: a job id the
        # user never wrote, one row per run. The CSV's lines, all of them at once.
        (
            '"list.csv"',
            ["s.svs"],
            "path\ngone.svs\ns.svs\nlost.svs\n",
            "slides CSV {tmp}/list.csv: 2 slides do not exist (line 2 gone.svs, line 4 lost.svs);"
            " fix the paths or remove the lines",
        ),
    ],
)
def test_bad_slide_lists_are_one_line_errors(tmp_path, slides, files, csv, expected):
    for f in files:
        touch(tmp_path / f)
    if csv is not None:
        (tmp_path / "list.csv").write_text(csv)
    message = _session_error(cohort_config(tmp_path, slides), tmp_path)
    assert expected.format(tmp=tmp_path) in message, message
    assert "workflows[0] (lab/study)" in message
    assert "\n" not in message


def test_more_slides_than_the_limits_allow_is_refused_before_anything_runs(tmp_path):
    for i in range(4):
        touch(tmp_path / "cohort" / f"s{i}.svs")
    config = cohort_config(
        tmp_path, '["cohort/*.svs"]', extra="[limits]\nmax_queued_per_tenant = 7\n"
    )
    message = _session_error(config, tmp_path)
    assert "4 slides × 2 jobs = 8 jobs, more than [limits] max_queued_per_tenant = 7" in message
    assert not (tmp_path / "data" / "state.db").exists()


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ('slide = "x.svs"', "names a slide, but `slides` names the workflow's slides"),
        ('branch = "B"', "in a cohort each slide runs on its own branch"),
    ],
)
def test_a_template_job_cannot_name_its_slide_or_branch(tmp_path, job, expected):
    path = tmp_path / "c.toml"
    path.write_text(
        '[[workflows]]\ntenant = "lab"\nname = "s"\nslides = ["*.svs"]\n'
        f'  [[workflows.jobs]]\n  id = "mask"\n  type = "TISSUE_MASK"\n  {job}\n'
    )
    with pytest.raises(ConfigError, match="workflows\\[0\\]") as info:
        load_config(path)
    assert expected in str(info.value)


def test_a_job_outside_a_cohort_still_needs_its_slide(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[[workflows]]\ntenant = "lab"\nname = "s"\n'
        '  [[workflows.jobs]]\n  id = "mask"\n  type = "TISSUE_MASK"\n'
    )
    with pytest.raises(ConfigError, match="job 'mask' has no slide"):
        load_config(path)


def test_a_glob_says_in_one_line_what_it_matched_that_is_no_slide(tmp_path, monkeypatch):
    # A directory, a FIFO (opening it would block), a broken symlink and a symlink loop that
    # `dir/*` matches were dropped without a word; an unreadable file stayed a slide silently
    # and only failed later. Each is said before anything runs, one line per kind.
    cohort = tmp_path / "cohort"
    touch(cohort / "a.svs")
    locked = touch(cohort / "locked.svs")
    (cohort / "sub").mkdir()
    os.mkfifo(cohort / "pipe")
    (cohort / "gone").symlink_to(cohort / "nowhere.svs")
    (cohort / "loop").symlink_to(cohort / "loop")
    real_access = os.access
    monkeypatch.setattr(  # the tests run as root, who may read anything
        "wsitui.session.cohort.os.access",
        lambda p, mode: False if Path(p) == locked else real_access(p, mode),
    )
    _, cohorts = expand_cohorts(
        load_config(cohort_config(tmp_path, '["cohort/*"]')), tmp_path / "data"
    )
    assert [s.path.name for s in cohorts[0].slides] == ["a.svs", "locked.svs"]
    skipped, unreadable = cohorts[0].notes()
    assert "matches 4 entries that are not a slide file, skipped:" in skipped
    for name, why in (
        ("gone", "No such file or directory"),
        ("loop", "Too many levels of symbolic links"),
        ("pipe", "a FIFO (named pipe)"),
    ):
        assert f"{cohort / name}: {why}" in skipped
    assert "and 1 more" in skipped  # at most three named: a glob over 5,000 folders is one line
    assert f"slide {locked} cannot be read (permission denied): its chain fails" in unreadable
    assert "\n" not in skipped + unreadable


def test_a_glob_matching_a_slide_and_a_link_to_it_runs_it_once_and_says_so(tmp_path):
    """`cohort/*.svs` over c.svs and lnk.svs -> c.svs was refused: "slide c.svs is listed
    twice (glob cohort/*.svs and glob cohort/*.svs); list each slide once", a list nobody wrote
    twice and no way to write it once."""
    cohort = tmp_path / "cohort"
    touch(cohort / "c.svs")
    touch(cohort / "d.svs")
    (cohort / "lnk.svs").symlink_to("c.svs")
    _, cohorts = expand_cohorts(
        load_config(cohort_config(tmp_path, '["cohort/*.svs"]')), tmp_path / "data"
    )
    assert [s.path.name for s in cohorts[0].slides] == ["c.svs", "d.svs"]
    (note,) = cohorts[0].notes()
    assert note.endswith(
        f"slides glob {cohort}/*.svs matches 1 file under a second name (a link), run once: "
        f"{cohort / 'lnk.svs'} is {cohort / 'c.svs'}"
    )


def test_a_glob_that_matches_only_non_slides_names_them(tmp_path):
    (tmp_path / "cohort" / "sub.svs").mkdir(parents=True)
    message = _session_error(cohort_config(tmp_path, '["cohort/*"]'), tmp_path)
    assert f"matches no slide file, only {tmp_path / 'cohort' / 'sub.svs'}: a directory" in (
        message
    )


def test_the_cli_says_a_glob_matches_nothing_in_one_line(tmp_path):
    out = wsitui("run", cohort_config(tmp_path, '["nowhere/*.svs"]'), "--data-dir", tmp_path / "d")
    assert_one_line_error(out, 2, "nowhere/*.svs matches no file; check the pattern")


def _rerun(tmp: Path, match: str, stored_index: dict) -> Cohort:
    """Expand the cohort as a rerun would, against a stored index (one stored slide `a`)."""
    config = load_config(cohort_config(tmp, '["cohort/*.svs"]', extra=""))
    wf = config.workflows[0].model_copy(update={"match": match})
    listed, meta = list_slides(wf, "w")
    a = str((tmp / "cohort" / "a.svs").resolve())
    stored = _Stored("wf1", {a: "a", "/gone/old.svs": "old"}, stored_index)
    return _expand_one(0, wf, listed, meta, stored)


def test_a_rerun_of_the_same_slides_says_nothing(tmp_path):
    a = touch(tmp_path / "cohort" / "a.svs")
    st = a.stat()
    config = load_config(cohort_config(tmp_path, '["cohort/*.svs"]', extra=""))
    wf = config.workflows[0]
    listed, meta = list_slides(wf, "w")
    path = str(a.resolve())
    index = {"slides": [{"id": "a", "path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}]}
    cohort = _expand_one(0, wf, listed, meta, _Stored("wf1", {path: "a"}, index))
    assert cohort.new == [] and not cohort.changed and not cohort.removed
    assert cohort.notes() == []


@pytest.mark.parametrize(
    ("match", "content", "changed"),
    [
        ("stat", b"same", True),  # touched: size + mtime differ from the stored run's
        ("hash", b"same", False),  # touched, same bytes: the same slide
        ("hash", b"other", True),
    ],
)
def test_a_rerun_reports_changed_and_removed_slides_and_adds_new_ones(
    tmp_path, match, content, changed
):
    import hashlib

    a = touch(tmp_path / "cohort" / "a.svs", content)
    touch(tmp_path / "cohort" / "b.svs")
    index = {
        "slides": [
            {"id": "a", "path": str(a.resolve()), "size": 4, "mtime_ns": 1,
             "sha256": hashlib.sha256(b"same").hexdigest()},
            {"id": "old", "path": "/gone/old.svs", "size": 1, "mtime_ns": 1},
        ]
    }  # fmt: skip
    cohort = _rerun(tmp_path, match, index)
    assert [s.id for s in cohort.slides] == ["a", "b"]
    assert cohort.new == ["b"]  # only b adds jobs
    assert bool(cohort.changed) is changed
    notes = cohort.notes()
    assert any("1 new slide of 2" in n for n in notes)
    assert any("/gone/old.svs is no longer listed; its results are kept" in n for n in notes)
    if changed:  # the run's fingerprint is kept: it stays reported until the slide is rerun
        assert (cohort.slides[0].size, cohort.slides[0].mtime_ns) == (4, 1)


def test_a_samples_ground_truth_is_not_taken_for_a_slide(tmp_path):
    # `slides = ["samples/*"]` over `wsitui sample` output made x.truth.npz a slide: its chain
    # failed ("not a slide image") and the run exited 1 though every slide succeeded.
    cohort = tmp_path / "cohort"
    touch(cohort / "x.svs")
    touch(cohort / "x.truth.npz")
    _, cohorts = expand_cohorts(
        load_config(cohort_config(tmp_path, '["cohort/*"]')), tmp_path / "data"
    )
    assert [s.path.name for s in cohorts[0].slides] == ["x.svs"]
    (skipped,) = cohorts[0].notes()
    assert f"{cohort / 'x.truth.npz'}: a sample slide's ground truth" in skipped
