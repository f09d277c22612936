"""Stress the engine's rules: 1,000+ jobs over 10 tenants with random holds, starts, cancels
(some ignored by the executor), failures, SystemExit from executors, retries, two clean
restarts and a crash, all appended to one JSONL event log that the rule oracle replays.

    .venv/bin/python benchmarks/stress_engine.py [--jobs 1200 --tenants 10 --seed 7]

Prints the run's figures and every rule violation the oracle finds (the goal is zero). Not a
CI test: it takes a minute or more.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.core.chaos import chaos_run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1200)
    p.add_argument("--tenants", type=int, default=10)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--users", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = anyio.run(
            lambda: chaos_run(
                Path(tmp),
                tenants=args.tenants,
                jobs=args.jobs,
                seed=args.seed,
                max_workers=args.workers,
                max_active_users=args.users,
            )
        )
    o = r.oracle
    print(
        f"jobs {r.jobs} · tenants {args.tenants} · workers {args.workers} · "
        f"active users {args.users} · restarts {r.restarts} · crashes {r.crashes}"
    )
    print(f"final states: {dict(sorted(r.states.items()))}")
    print(f"events replayed {o.events} · starts {o.starts} · wall {r.seconds:.1f} s")
    print(f"rule violations: {len(o.violations)}")
    for v in o.violations[:20]:
        print("  " + v)
    print(f"jobs whose committed transitions the log misses: {len(r.missing)}")
    for m in r.missing[:20]:
        print("  " + m)
    return 1 if o.violations or r.missing else 0


if __name__ == "__main__":
    sys.exit(main())
