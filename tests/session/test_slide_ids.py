"""A cohort slide's id (its branch, its row in summary.csv) comes from its file name."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsitui.session.cohort import new_slide_id


@pytest.mark.parametrize(
    ("name", "sid"),
    [
        ("café 🧪.svs", "cafe"),  # was "caf": the accented letter and the emoji were dropped
        ("Präparat-Ä1.svs", "Praparat-A1"),  # was "Pr_parat-_1"
        ("ﬁle²x.ndpi", "file2x"),  # compatibility forms: the letters they stand for
        ("TCGA-A1-A0SB.svs", "TCGA-A1-A0SB"),  # plain names as they were
        ("工作流.svs", "slide"),  # nothing ASCII-like left: the fallback, as before
    ],
)
def test_a_slide_id_keeps_the_letters_of_an_accented_name(name, sid):
    assert new_slide_id(Path("/slides") / name, set()) == sid


def test_two_names_that_read_alike_get_two_ids():
    taken = {new_slide_id(Path("/s/café.svs"), set())}
    other = new_slide_id(Path("/s/cafe.svs"), taken)
    assert other != "cafe" and other.startswith("cafe-")  # a short hash tells them apart
