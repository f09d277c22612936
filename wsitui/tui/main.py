"""`wsitui [--config FILE]`: open the TUI over an engine built from the config (or defaults)."""

from __future__ import annotations

import getpass
import re
import sys
from pathlib import Path

from wsitui.core.engine import Engine, EngineError
from wsitui.core.eventlog import JsonlEventLog
from wsitui.core.paths import default_data_dir
from wsitui.core.store import StoreError
from wsitui.headless.config import Config, ConfigError, load_config
from wsitui.headless.plan import InputError, check_and_plan, make_samples, submit_or_resume
from wsitui.jobs.registry import default_executors
from wsitui.slides.errors import SlideError


def default_tenant(config: Config) -> str:
    if config.ui.tenant:
        return config.ui.tenant
    if config.workflows:
        return config.workflows[0].tenant
    try:
        user = re.sub(r"[^A-Za-z0-9_-]", "-", getpass.getuser()).strip("-")
    except (KeyError, OSError):
        user = ""
    return user[:64] or "default"


def tui_main(config_path: Path | None, data_dir: Path | None, tenant: str | None) -> int:
    try:
        config = load_config(config_path) if config_path else Config()
        data = data_dir or config.paths.data_dir or default_data_dir()
        engine = Engine(
            data,
            default_executors(),
            max_workers=config.scheduler.max_workers,
            max_active_users=config.scheduler.max_active_users,
            results_root=config.paths.results,
        )
        make_samples(config, print)
        plan = check_and_plan(engine, config, data)
        log = JsonlEventLog(config.paths.events) if config.paths.events else None
    except (ConfigError, InputError, SlideError, EngineError, StoreError) as exc:
        print(f"wsitui: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"wsitui: event log {config.paths.events}: {exc.strerror}", file=sys.stderr)
        return 2

    def startup(engine: Engine) -> None:
        # Config workflows arrive held: the user starts them (s / S), or resumes old ones.
        for i, wf in enumerate(config.workflows):
            submit_or_resume(engine, i, wf, plan, start=False)

    from wsitui.tui.app import WsituiApp  # imports textual-image, which probes the terminal

    app = WsituiApp(
        engine,
        tenant=tenant or default_tenant(config),
        startup=startup,
        image_protocol=config.ui.image_protocol,
        sample_dir=data / "samples",
        listeners=[log] if log else [],
    )
    try:
        app.run()
    finally:
        if log:
            log.close()
    return app.return_code or 0
