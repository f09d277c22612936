"""Job detail: params, timeline of transitions, error, outputs and the job's preview image."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from wsitui.core.models import Job, Transition
from wsitui.tui.badges import badge
from wsitui.tui.widgets.preview import ImageProtocol, image_widget

PREVIEW = "preview.png"


class JobDetailScreen(Screen[None]):
    DEFAULT_CSS = """
    JobDetailScreen VerticalScroll { padding: 0 2; }
    JobDetailScreen .section { text-style: bold; margin-top: 1; color: $accent; }
    JobDetailScreen DataTable { height: auto; max-height: 12; }
    JobDetailScreen .preview { width: auto; height: 18; }
    JobDetailScreen .error { color: $error; }
    """
    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("p", "app.preview", "Full-screen preview"),
    ]

    def __init__(
        self,
        job: Job,
        jobs: dict[str, Job],
        timeline: list[Transition],
        results_dir: Path,
        protocol: ImageProtocol,
    ) -> None:
        super().__init__()
        self.job, self.jobs, self.timeline = job, jobs, timeline
        self.results_dir, self.protocol = results_dir, protocol

    def compose(self) -> ComposeResult:
        job = self.job
        b = badge(job, self.jobs)
        with VerticalScroll():
            yield Label(
                f"[b]{job.key}[/b] · {job.job_type} · branch {job.branch} · "
                f"[b]{b.label}[/b] {b.reason}  [dim](attempt {job.attempt}, {job.id})[/]"
            )
            yield Label(f"slide: {job.slide}")
            yield Label("Params", classes="section")
            yield Static(json.dumps(job.params, indent=2, sort_keys=True) if job.params else "{}")
            yield Label("Timeline", classes="section")
            table: DataTable[str] = DataTable(show_cursor=False)
            table.add_columns("time", "state", "try", "reason")
            for t in self.timeline:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.ts))
                table.add_row(stamp, str(t.state), str(t.attempt), t.reason)
            yield table
            if job.error:
                yield Label("Error", classes="section")
                yield Static(Text(job.error), classes="error")
            yield Label("Outputs", classes="section")
            files = (
                sorted(p.name for p in self.results_dir.iterdir())
                if self.results_dir.is_dir()
                else []
            )
            yield Static(
                str(self.results_dir) + ("\n  " + "  ".join(files) if files else "\n  (none yet)")
            )
            preview = self.results_dir / PREVIEW
            yield Label("Preview", classes="section")
            if preview.is_file():
                yield image_widget(preview, self.protocol, classes="preview")
            else:
                yield Label("[dim]no preview yet[/]")
        yield Footer()


class PreviewScreen(Screen[None]):
    DEFAULT_CSS = """
    PreviewScreen { align: center middle; }
    PreviewScreen .preview { width: auto; height: 1fr; }
    PreviewScreen .missing { color: $text-muted; }
    """
    BINDINGS = [Binding("escape,q,p", "app.pop_screen", "Back")]

    def __init__(self, path: Path, protocol: ImageProtocol, title: str) -> None:
        super().__init__()
        self.path, self.protocol, self.title_text = path, protocol, title

    def compose(self) -> ComposeResult:
        yield Label(self.title_text)
        if self.path.is_file():
            yield image_widget(self.path, self.protocol, classes="preview")
        else:
            yield Label("this job has no preview yet", classes="missing")
        yield Footer()
