"""A config value of the wrong kind is one line naming the key and the fix, not only
pydantic's description of the problem (and never one of our class names)."""

from __future__ import annotations

import pytest

from wsitui.session.config import ConfigError, load_config

JOB = '[[workflows.jobs]]\nid="x"\ntype="TISSUE_MASK"\nslide="s.svs"\n'


@pytest.mark.parametrize(
    ("body", "where", "fix"),
    [
        (
            f'[[workflows]]\ntenant="a"\nname="{"n" * 300}"\n{JOB}',
            "workflows[0].name",
            "shorten it",
        ),
        (f'[[workflows]]\ntenant="a"\nname=""\n{JOB}', "workflows[0].name", "give it a value"),
        ('[scheduler]\nmax_workers="four"\n', "scheduler.max_workers", "whole number, without"),
        ("[scheduler]\nmax_workers=2.5\n", "scheduler.max_workers", "give a whole number"),
        # Numbers are strict: a quoted number or a boolean was read as one (true: 1 worker)
        ('[scheduler]\nmax_workers="4"\n', "scheduler.max_workers", "whole number, without"),
        ("[scheduler]\nmax_workers=true\n", "scheduler.max_workers", "whole number"),
        ("[scheduler]\nmax_active_users=true\n", "scheduler.max_active_users", "whole number"),
        ("[scheduler]\ncancel_grace=true\n", "scheduler.cancel_grace", "give a number"),
        ('[limits]\nrate="5"\n', "limits.rate", "give a number, without"),
        ("[limits]\nmax_queued=true\n", "limits.max_queued", "whole number"),
        # nan was refused as "less than or equal to 3600"
        ("[scheduler]\ncancel_grace=nan\n", "scheduler.cancel_grace", "finite number"),
        ("[limits]\nrate=inf\n", "limits.rate", "nan and inf are not"),
        ('[scheduler]\ncancel_grace="x"\n', "scheduler.cancel_grace", "give a number, without"),
        (
            f'[[workflows]]\ntenant="a"\nname="w"\n{JOB}depends_on="y"\n',
            "workflows[0].jobs[0].depends_on",
            'give a list, e.g. ["a", "b"]',
        ),
        (
            f'[[workflows]]\ntenant="a"\nname="w"\n{JOB}params="y"\n',
            "workflows[0].jobs[0].params",
            "give a table",
        ),
        ("scheduler = 3\n", "scheduler: Input should be a table", "[section]"),
    ],
)
def test_a_value_of_the_wrong_kind_says_the_fix(tmp_path, body, where, fix):
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}: {where}" in message and fix in message, message
    assert "\n" not in message and "SchedulerConfig" not in message
