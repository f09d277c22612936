"""[limits] as README states it: 0 switches a limit off; absurd values are refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsitui.session.config import ConfigError, load_config


def limits_of(tmp_path: Path, body: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.toml"
    path.write_text(f"[limits]\n{body}\n")
    return load_config(path).limits.limits()


@pytest.mark.parametrize("body", ["burst = 0", "rate = 0", "rate = 0\nburst = 0"])
def test_zero_switches_the_rate_limit_off(tmp_path, body):
    assert limits_of(tmp_path, body).rate is None


def test_zero_switches_the_queue_bounds_off(tmp_path):
    limits = limits_of(tmp_path, "max_queued_per_tenant = 0\nmax_queued = 0")
    assert limits.max_queued_per_tenant is None and limits.max_queued is None


@pytest.mark.parametrize("key", ["max_queued_per_tenant", "max_queued"])
@pytest.mark.parametrize("value", ["1e23", str(10**23)])
def test_an_absurd_queue_bound_is_refused_in_one_line(tmp_path, key, value):
    with pytest.raises(ConfigError) as refused:
        limits_of(tmp_path, f"{key} = {value}")
    message = str(refused.value)
    assert key in message and "\n" not in message
