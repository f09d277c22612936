"""The current tenant's workflows, each a row with its state and progress bar."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ListItem, ListView, ProgressBar

from wsitui.core.models import WorkflowStatus


class WorkflowRow(ListItem):
    DEFAULT_CSS = """
    WorkflowRow { height: 1; }
    WorkflowRow Horizontal { height: 1; }
    WorkflowRow .wf-name { width: 1fr; }
    WorkflowRow .wf-state { width: 11; }
    WorkflowRow ProgressBar { width: 36; }
    WorkflowRow ProgressBar Bar { width: 28; }
    """

    def __init__(self, status: WorkflowStatus) -> None:
        super().__init__()
        self.workflow_id = status.workflow.id
        self._status = status

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(classes="wf-name")
            yield Label(classes="wf-state")
            yield ProgressBar(total=100, show_eta=False)

    def on_mount(self) -> None:
        self.show(self._status)

    def show(self, status: WorkflowStatus) -> None:
        self._status = status
        wf = status.workflow
        n = len(status.jobs)
        self.query_one(".wf-name", Label).update(
            f"{wf.name} [dim]{wf.id}{f' · {n} job' + ('s' if n > 1 else '') if n else ''}[/]"
        )
        state = self.query_one(".wf-state", Label)
        state.update(str(status.state))
        state.set_classes(f"wf-state state-{str(status.state).lower()}")
        self.query_one(ProgressBar).update(progress=round(status.progress * 100, 1))


class WorkflowList(ListView):
    DEFAULT_CSS = """
    WorkflowList { height: auto; max-height: 8; border: round $primary-darken-2; }
    WorkflowList:focus { border: round $accent; }
    """

    def rows(self) -> dict[str, WorkflowRow]:
        return {row.workflow_id: row for row in self.query(WorkflowRow)}
