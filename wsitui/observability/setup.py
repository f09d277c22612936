"""What a session switches on for observability: the shared `Metrics`, the job log, the
Prometheus endpoint and the log handlers — one object both faces open and close the same way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsitui.core.engine import Engine
from wsitui.core.events import Listener
from wsitui.core.metrics import Metrics
from wsitui.observability.logs import JobLog, LogSetup, setup_logging
from wsitui.observability.prometheus import registry_for
from wsitui.observability.server import MetricsServer, bind

DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_METRICS_LINGER_S = 5.0  # after a headless run: time for a last scrape of the final counts


@dataclass(frozen=True)
class ObserveOptions:
    metrics_port: int | None = None  # None: no endpoint (the default); 0: any free port
    metrics_host: str = DEFAULT_METRICS_HOST
    log_file: Path | None = None
    log_json: bool = False
    log_to_stderr: bool = False  # headless `--log-json` without a file; never in the TUI
    errors_to_stderr: bool = False  # headless without log options: errors still reach stderr
    # Seconds the endpoint stays up after a run that finished (not one interrupted), for a last
    # scrape; 0 in the TUI (the user quits on purpose).
    metrics_linger: float = 0.0


class Observability:
    """Built before the engine starts (so a bad port or log file is refused first)."""

    def __init__(self, engine: Engine, opts: ObserveOptions) -> None:
        self._engine, self._linger = engine, opts.metrics_linger
        self.metrics = Metrics()  # THE metrics source: the TUI's screen and the endpoint
        self.job_log = JobLog()
        self.logs: LogSetup = setup_logging(
            opts.log_file,
            as_json=opts.log_json,
            to_stderr=opts.log_to_stderr,
            errors_to_stderr=opts.errors_to_stderr,
        )
        self.server: MetricsServer | None = None
        if opts.metrics_port is not None:
            try:
                sock = bind(opts.metrics_host, opts.metrics_port)
            except BaseException:
                self.logs.close()
                raise
            self.server = MetricsServer(sock, registry_for(lambda: self.metrics.snapshot(engine)))

    def listeners(self) -> list[Listener]:
        """Bus listeners to attach when the engine is open (the metrics one exactly once)."""
        return [self.metrics, self.job_log]

    async def start(self) -> None:
        if self.server is not None:
            await self.server.start()

    def start_soon(self) -> None:
        if self.server is not None:
            self.server.start_soon()

    async def aclose(self) -> None:
        if self.server is not None:
            if self._linger > 0 and self._finished():
                await self.server.linger(self._linger)
            await self.server.aclose()

    def _finished(self) -> bool:
        """The run ended by itself (nothing left running or queued: Ctrl-C leaves work) after
        ending some job (a refused config has nothing to scrape)."""
        try:
            return self._engine.is_idle() and bool(self.metrics.snapshot(self._engine).outcomes)
        except Exception:  # an engine that never opened
            return False

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.logs.close()
