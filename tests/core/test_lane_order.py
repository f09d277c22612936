"""The order jobs of one submission enter their lanes (their seqs): dependencies first, and
each branch in the order it was submitted whenever the dependencies allow it."""

from __future__ import annotations

import graphlib

from hypothesis import given, settings
from hypothesis import strategies as st

from wsitui.core.records import JobSpec
from wsitui.core.validation import _lane_order


@st.composite
def submissions(draw: st.DrawFn) -> list[JobSpec]:
    """A random acyclic submission: job i may depend on any job created before it in a hidden
    creation order, then the jobs are listed in a random (submission) order."""
    n = draw(st.integers(1, 12))
    branches = draw(st.lists(st.sampled_from("ABC"), min_size=n, max_size=n))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    listed = draw(st.permutations(range(n)))
    return [
        JobSpec(
            id=f"j{i}",
            type="TISSUE_MASK",
            slide="s.svs",
            branch=branches[i],
            depends_on=tuple(f"j{d}" for d in deps[i]),
        )
        for i in listed
    ]


def _fifo_possible(specs: list[JobSpec]) -> bool:
    """Whether some order keeps every dependency and every branch's submission order."""
    graph: dict[str, set[str]] = {s.id: set(s.depends_on) for s in specs}
    last: dict[str, str] = {}
    for s in specs:
        if s.branch in last:
            graph[s.id].add(last[s.branch])
        last[s.branch] = s.id
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(submissions())
def test_dependencies_first_and_each_branch_fifo_when_possible(specs: list[JobSpec]):
    ordered = _lane_order(specs, {s.id for s in specs})
    assert sorted(s.id for s in ordered) == sorted(s.id for s in specs)
    position = {s.id: i for i, s in enumerate(ordered)}
    for s in specs:
        assert all(position[d] < position[s.id] for d in s.depends_on)
    if _fifo_possible(specs):
        for branch in {s.branch for s in specs}:
            submitted = [s.id for s in specs if s.branch == branch]
            assert sorted(submitted, key=position.__getitem__) == submitted


def _chain(n: int) -> list[JobSpec]:
    """j0 <- j1 <- ... <- j(n-1), listed last first, over 7 branches."""
    return [
        JobSpec(
            id=f"j{i}",
            type="TISSUE_MASK",
            slide="s.svs",
            branch=f"b{i % 7}",
            depends_on=(f"j{i - 1}",) if i else (),
        )
        for i in reversed(range(n))
    ]


def test_a_chain_of_thousands_listed_last_first_is_ordered_not_a_recursion_error():
    # A recursive depth-first order raised RecursionError past ~1,000 jobs (the CLI then
    # said "input nested too deeply", of a valid config).
    ordered = _lane_order(_chain(5000), {f"j{i}" for i in range(5000)})
    assert [s.id for s in ordered] == [f"j{i}" for i in range(5000)]


def test_a_cycle_deep_in_a_long_chain_is_named_in_one_line():
    from tests.core.fakes import GatedExecutor
    from wsitui.core.errors import InvalidRequest
    from wsitui.core.rules import Scheduler
    from wsitui.core.validation import JobValidator

    specs = _chain(3000)
    specs[-1] = specs[-1].model_copy(update={"depends_on": ("j2999",)})  # j0 needs j2999
    validator = JobValidator({"TISSUE_MASK": GatedExecutor()}, Scheduler())
    try:
        validator.ordered(specs, existing={})
    except InvalidRequest as exc:
        message = str(exc)
    else:
        raise AssertionError("a cycle was accepted")
    assert message.startswith("dependency cycle: j2999 -> j2998 -> ") and "\n" not in message
    assert message.count("->") == 3000 and "remove one of these depends_on" in message
