"""Admission control through the real engine: refusals change nothing, floods stay limited,
other tenants keep being admitted and run."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.core.fakes import LooseParams
from wsitui.core.admission import Limits
from wsitui.core.engine import Engine, InvalidRequest, NotFound, QueueFull, RateLimited
from wsitui.core.executor import Executor, JobContext
from wsitui.core.records import JobSpec, JobState, WorkflowSpec

pytestmark = pytest.mark.anyio


class Instant(Executor):
    """Finishes at once: these tests are about admission, not work."""

    params_model = LooseParams
    job_type = "TISSUE_MASK"

    async def run(self, ctx: JobContext) -> None:
        ctx.report(1, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def spec(name: str, jobs: int = 1, branch: str = "main") -> WorkflowSpec:
    return WorkflowSpec(
        name=name,
        jobs=tuple(
            JobSpec(id=f"j{i}", type="TISSUE_MASK", slide="s.svs", branch=branch)
            for i in range(jobs)
        ),
    )


def stored_jobs(engine: Engine, tenant: str) -> int:
    return sum(len(engine.workflow(tenant, w.workflow.id).jobs) for w in engine.workflows(tenant))


async def test_a_flood_is_rate_limited_and_another_tenant_is_admitted_and_runs(tmp_path: Path):
    clock = Clock()
    limits = Limits(rate=5.0, burst=20, max_queued_per_tenant=5_000, max_queued=10_000)
    engine = Engine(tmp_path / "d", [Instant()], clock=clock, limits=limits, max_workers=2)
    async with engine:
        admitted, refused, messages = 0, 0, set()
        for i in range(10_000):
            try:
                engine.submit("flood", spec(f"f{i}"), start=False)
                admitted += 1
            except RateLimited as exc:
                refused += 1
                messages.add(str(exc).split(",")[0])
            if i % 2_000 == 0:  # bob submits in the middle of the flood
                engine.submit("bob", spec(f"b{i}", branch="B"))
            clock.now += 0.001  # 10,000 submissions in 10 s
        # Burst plus what 10 s at 5/s refill (give or take one for rounding).
        assert 20 + 49 <= admitted <= 20 + 51
        assert refused == 10_000 - admitted
        assert messages == {"tenant flood: rate limited"}
        # Nothing half-submitted, nothing lost: exactly the admitted workflows exist.
        assert len(engine.workflows("flood")) == admitted
        assert stored_jobs(engine, "flood") == admitted
        with anyio.fail_after(30):
            await engine.wait_idle()
        bob = [engine.workflow("bob", w.workflow.id) for w in engine.workflows("bob")]
        assert len(bob) == 5
        assert all(j.state is JobState.SUCCEEDED for s in bob for j in s.jobs)
    # And on disk: a restart finds the same admitted workflows, no more.
    async with Engine(tmp_path / "d", [Instant()], clock=clock) as again:
        assert len(again.workflows("flood")) == admitted


async def test_queue_bounds_refuse_whole_workflows_and_free_up_as_jobs_finish(tmp_path: Path):
    limits = Limits(max_queued_per_tenant=10, max_queued=15)
    async with Engine(tmp_path / "d", [Instant()], limits=limits) as engine:
        for i in range(4):
            engine.submit("alice", spec(f"a{i}", jobs=2), start=False)  # 8 held jobs
        with pytest.raises(QueueFull, match=r"^tenant alice: queue full: 8 jobs queued"):
            engine.submit("alice", spec("three", jobs=3), start=False)
        assert [w.workflow.name for w in engine.workflows("alice")] == ["a0", "a1", "a2", "a3"]
        assert engine.pending_jobs("alice") == 8
        first = engine.workflows("alice")[0].workflow.id
        engine.add_job(
            "alice", first, JobSpec(id="x", type="TISSUE_MASK", slide="s.svs"), start=False
        )
        engine.add_job(
            "alice", first, JobSpec(id="y", type="TISSUE_MASK", slide="s.svs"), start=False
        )
        with pytest.raises(QueueFull):
            engine.add_job(
                "alice", first, JobSpec(id="z", type="TISSUE_MASK", slide="s.svs"), start=False
            )
        assert "z" not in {j.key for j in engine.workflow("alice", first).jobs}
        # The total bound: 10 queued + 5 of bob's = 15; the next one is refused for everyone.
        engine.submit("bob", spec("b", jobs=5), start=False)
        with pytest.raises(QueueFull, match=r"^queue full: 15 jobs queued \(limit 15\)"):
            engine.submit("carol", spec("c"), start=False)
        # Jobs that run and finish leave the queue: alice can submit again.
        engine.start_workflow("alice", first)
        with anyio.fail_after(10):
            await engine.wait_idle()
        assert engine.pending_jobs("alice") == 6
        assert engine.pending_jobs() == 11
        engine.submit("alice", spec("later", jobs=3), start=False)
        assert engine.admission.refused  # counted for the metrics endpoint


async def test_no_limits_by_default(tmp_path: Path):
    async with Engine(tmp_path / "d", [Instant()]) as engine:
        for i in range(300):
            engine.submit("alice", spec(f"w{i}"), start=False)
        assert engine.pending_jobs("alice") == 300


async def test_an_invalid_submission_spends_no_rate_limit_token(tmp_path: Path):
    engine = Engine(tmp_path / "d", [Instant()], limits=Limits(rate=0.001, burst=1))
    async with engine:
        bad = WorkflowSpec(
            name="bad",
            jobs=(JobSpec(id="a", type="TISSUE_MASK", slide="s", depends_on=("nope",)),),
        )
        with pytest.raises(InvalidRequest):
            engine.submit("t", bad)
        engine.submit("t", spec("good"))  # the one token is still there


async def test_a_workflow_larger_than_the_bound_is_told_it_can_never_fit(tmp_path: Path):
    engine = Engine(tmp_path / "d", [Instant()], limits=Limits(max_queued_per_tenant=3))
    async with engine:
        with pytest.raises(QueueFull) as refused:
            engine.submit("t", spec("big", jobs=5))
    message = str(refused.value)
    assert "can never fit" in message and "max_queued_per_tenant" in message
    assert "wait for some to finish" not in message


async def test_a_series_is_checked_whole_before_anything_is_taken(tmp_path: Path):
    engine = Engine(tmp_path / "d", [Instant()], limits=Limits(max_queued_per_tenant=4))
    async with engine:
        engine.check_admission([("t", 2, 0), ("u", 4, 0)])  # fits: nothing raised
        with pytest.raises(QueueFull):  # the second one no longer fits after the first
            engine.check_admission([("t", 3, 0), ("t", 2, 0)])
        assert engine.pending_jobs() == 0
        engine.submit("t", spec("w", jobs=4), start=False)  # nothing was taken by the checks


@pytest.mark.parametrize(
    ("limits", "bound"),
    [
        (Limits(max_queued_per_tenant=3), "max_queued_per_tenant"),
        (Limits(max_queued=3), "max_queued"),
    ],
)
async def test_a_series_larger_than_a_bound_is_told_it_can_never_fit(
    tmp_path: Path, limits: Limits, bound: str
):
    """A config of two 2-job workflows under a bound of 3, on an empty queue, said "queue full:
    2 jobs queued (limit 3); wait for some to finish": 2 is under 3, nothing was queued, and no
    wait ever lets 4 jobs in. It says the series can never fit and the bound that lets it."""
    async with Engine(tmp_path / "d", [Instant()], limits=limits) as engine:
        with pytest.raises(QueueFull) as refused:
            engine.check_admission([("t", 2, 0), ("t", 2, 0)])
        assert refused.value.never
        message = str(refused.value)
        assert "4 jobs submitted together can never fit the limit of 3" in message, message
        assert f"raise [limits] {bound} to at least 4" in message
        assert "queue full" not in message and "wait for some to finish" not in message
        engine.check_admission([("t", 2, 0), ("u", 1, 0)])  # 3 fits: nothing raised


async def test_a_series_refused_by_a_full_queue_tells_its_jobs_from_those_queued(tmp_path: Path):
    """The queue count of a series' refusal held its own earlier workflows: "2 jobs queued
    (limit 3)" for 1 queued. It names the jobs queued and those submitted together apart."""
    async with Engine(
        tmp_path / "d", [Instant()], limits=Limits(max_queued_per_tenant=3)
    ) as engine:
        engine.submit("t", spec("held"), start=False)
        with pytest.raises(QueueFull) as refused:
            engine.check_admission([("t", 1, 0), ("t", 2, 0)])
        assert not refused.value.never
        assert str(refused.value) == (
            "tenant t: queue full: 1 jobs queued and 3 submitted together (limit 3 per tenant);"
            " wait for some to finish"
        )
    async with Engine(tmp_path / "e", [Instant()], limits=Limits(max_queued=3)) as engine:
        engine.submit("u", spec("held"), start=False)
        with pytest.raises(
            QueueFull, match=r"^queue full: 1 jobs queued and 3 submitted together \(limit 3\);"
        ):
            engine.check_admission([("t", 2, 0), ("v", 1, 0)])


async def test_a_retry_is_refused_like_a_submission_when_the_tenant_queue_is_full(tmp_path: Path):
    limits = Limits(max_queued_per_tenant=2, max_queued=3)
    async with Engine(tmp_path / "d", [Instant()], limits=limits) as engine:
        wf = engine.submit("alice", spec("a", jobs=1), start=False)
        job = wf.jobs[0].id
        engine.cancel("alice", job)  # CANCELED: no longer PENDING
        engine.submit("alice", spec("b", jobs=2), start=False)  # alice's queue is full
        with pytest.raises(QueueFull, match=r"^tenant alice: queue full: 2 jobs queued"):
            engine.retry("alice", job)
        assert engine.job("alice", job).state is JobState.CANCELED  # nothing changed
        assert engine.pending_jobs("alice") == 2
        # The total bound counts too: bob fills it, and bob's retry is refused by it.
        bob = engine.submit("bob", spec("c", jobs=1), start=False).jobs[0].id
        engine.cancel("bob", bob)
        engine.submit("bob", spec("d", jobs=1), start=False)
        with pytest.raises(QueueFull, match=r"^queue full: 3 jobs queued \(limit 3\)"):
            engine.retry("bob", bob)
        assert engine.job("bob", bob).state is JobState.CANCELED


async def test_a_rerun_and_a_retry_spend_a_rate_limit_token_like_a_submission(tmp_path: Path):
    clock = Clock()
    limits = Limits(rate=1.0, burst=1)
    engine = Engine(tmp_path / "d", [Instant()], clock=clock, limits=limits)
    async with engine:
        done = engine.submit("t", spec("w")).jobs[0].id  # the one token
        with anyio.fail_after(10):
            await engine.wait_idle()
        with pytest.raises(RateLimited, match=r"^tenant t: rate limited, retry in 1\.0 s"):
            engine.rerun("t", done)
        assert engine.job("t", done).state is JobState.SUCCEEDED
        clock.now += 1.0  # a token is back: the rerun is admitted and spends it
        engine.rerun("t", done)
        with anyio.fail_after(10):
            await engine.wait_idle()
        clock.now += 1.0
        held = engine.submit("t", spec("h"), start=False).jobs[0].id
        engine.cancel("t", held)
        with pytest.raises(RateLimited):
            engine.retry("t", held)
        assert engine.job("t", held).state is JobState.CANCELED
        # Another tenant's bucket is its own.
        engine.submit("u", spec("u"))


async def test_an_invalid_retry_spends_no_token(tmp_path: Path):
    engine = Engine(tmp_path / "d", [Instant()], limits=Limits(rate=0.001, burst=2))
    async with engine:
        job = engine.submit("t", spec("w"), start=False).jobs[0].id  # token 1 of 2
        with pytest.raises(InvalidRequest):
            engine.retry("t", job)  # PENDING: not retryable
        engine.cancel("t", job)
        engine.retry("t", job)  # token 2: the refused retry took none


async def test_another_tenants_job_is_unknown_to_retry_even_when_rate_limited(tmp_path: Path):
    clock = Clock()
    engine = Engine(tmp_path / "d", [Instant()], clock=clock, limits=Limits(rate=1.0, burst=1))
    async with engine:
        job = engine.submit("alice", spec("a"), start=False).jobs[0].id
        engine.cancel("alice", job)
        engine.submit("bob", spec("b"), start=False)  # bob's one token is spent
        with pytest.raises(NotFound) as unknown:
            engine.retry("bob", job)  # R7: refused as unknown, not as rate limited
        assert str(unknown.value) == f"no job {job!r} for tenant 'bob'"
