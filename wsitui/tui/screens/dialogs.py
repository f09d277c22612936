"""Modal dialogs: new workflow, add job, switch tenant, confirm."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester, SuggestFromList
from textual.widgets import Button, Input, Label, OptionList, Select, SelectionList
from textual.widgets.option_list import Option

from wsitui.core.models import SAFE_ID, SAFE_ID_HINT, JobType

SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".vms", ".vmu", ".scn", ".bif", ".svslide",
    ".dcm", ".png", ".jpg", ".jpeg",
)  # fmt: skip

DIALOG_CSS = """
ModalScreen { align: center middle; }
ModalScreen > Vertical {
    width: 72; height: auto; max-height: 100%; overflow-y: auto;
    border: thick $accent; background: $surface; padding: 1 2;
}
ModalScreen .title { text-style: bold; margin-bottom: 1; }
ModalScreen .hint { color: $text-muted; margin-top: 1; }
ModalScreen SelectionList { max-height: 6; }
ModalScreen .error { color: $error; height: auto; }
ModalScreen Horizontal.buttons { height: auto; margin-top: 1; align-horizontal: right; }
ModalScreen Button { margin-left: 1; }
ModalScreen Input, ModalScreen Select { background: $boost; }
ModalScreen #cells-opts { height: auto; }
ModalScreen .model-row { height: auto; }
ModalScreen .model-row Input { width: 1fr; }
ModalScreen .model-row Select { width: 12; margin-left: 1; }
"""


class SlidePathSuggester(Suggester):
    """Completes file-system paths, offering directories and slide files only."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = str(Path(value).expanduser()) + ("/" if value.endswith("/") else "")
        folder, _, stem = expanded.rpartition("/")
        base = Path(folder or ".")
        try:
            names = sorted(p.name for p in base.iterdir())
        except OSError:
            return None
        for name in names:
            if not name.startswith(stem) or name.startswith("."):
                continue
            full = base / name
            if full.is_dir():
                return value + name[len(stem) :] + "/"
            if name.lower().endswith(SLIDE_SUFFIXES):
                return value + name[len(stem) :]
        return None


class NewWorkflowDialog(ModalScreen[str | None]):
    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("New workflow", classes="title")
            yield Input(placeholder="name, e.g. cohort-3 masks", id="name")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Create", variant="primary", id="ok")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        if name:
            self.dismiss(name)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class NewJob:
    key: str
    job_type: JobType
    slide: str
    branch: str
    depends_on: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)


MODEL_NAMES = ("shipped", "classical", "brightfield_nuclei")


class ModelSuggester(Suggester):
    """Completes a SEGMENT_CELLS model: a known name, or a path to a folder or .pt file."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        for name in MODEL_NAMES:
            if name.startswith(value) and name != value:
                return name
        expanded = str(Path(value).expanduser()) + ("/" if value.endswith("/") else "")
        folder, _, stem = expanded.rpartition("/")
        try:
            names = sorted(p.name for p in Path(folder or ".").iterdir())
        except OSError:
            return None
        for name in names:
            if name.startswith(stem) and not name.startswith("."):
                full = Path(folder or ".") / name
                if full.is_dir():
                    return value + name[len(stem) :] + "/"
                if name.endswith(".pt"):
                    return value + name[len(stem) :]
        return None


class AddJobDialog(ModalScreen[NewJob | None]):
    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(
        self, workflow_name: str, job_keys: Sequence[str], branches: Sequence[str]
    ) -> None:
        super().__init__()
        self.workflow_name = workflow_name
        self.job_keys = list(job_keys)
        self.branches = list(branches) or ["main"]

    def compose(self) -> ComposeResult:
        n = len(self.job_keys) + 1
        with Vertical():
            yield Label(Text(f"Add a job to {self.workflow_name}"), classes="title")
            yield Label(
                "Slide path (→ accepts the completion; folders and slide files are offered)",
                classes="hint",
            )
            yield Input(
                placeholder="path/to/slide.svs",
                id="slide",
                suggester=SlidePathSuggester(),
                compact=True,
            )
            yield Label("Job type", classes="hint")
            yield Select(
                [(t.value, t) for t in JobType],
                value=JobType.TISSUE_MASK,
                allow_blank=False,
                id="type",
                compact=True,
            )
            with Vertical(id="cells-opts"):
                yield Label(
                    "Model: shipped, classical, brightfield_nuclei, a folder or a .pt file",
                    classes="hint",
                )
                with Horizontal(classes="model-row"):
                    yield Input(
                        placeholder="shipped", id="model", suggester=ModelSuggester(), compact=True
                    )
                    yield Select(
                        [(d, d) for d in ("auto", "cpu", "cuda", "mps")],
                        value="auto",
                        allow_blank=False,
                        id="device",
                        compact=True,
                    )
            yield Label(Text(f"Branch (existing: {', '.join(self.branches)})"), classes="hint")
            yield Input(
                value=self.branches[0],
                id="branch",
                suggester=SuggestFromList(self.branches),
                compact=True,
            )
            yield Label("Job id", classes="hint")
            yield Input(value=f"job{n}", id="key", compact=True)
            if self.job_keys:
                yield Label("Depends on", classes="hint")
                yield SelectionList[str](*[(k, k) for k in self.job_keys], id="deps", compact=True)
            yield Label("", classes="error", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Add", variant="primary", id="ok")

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted)
    def _ok(self) -> None:
        slide = self.query_one("#slide", Input).value.strip()
        slide = str(Path(slide).expanduser()) if slide else ""
        branch = self.query_one("#branch", Input).value.strip()
        key = self.query_one("#key", Input).value.strip()
        error = self.query_one("#error", Label)
        if not slide:
            error.update("give the path of a slide file")
            return
        for kind, value in (("branch", branch), ("job id", key)):
            if not SAFE_ID.match(value):
                error.update(f"{kind} {value!r} is not allowed: {SAFE_ID_HINT}")
                return
        if key in self.job_keys:
            error.update(f"job id {key!r} is already used in this workflow")
            return
        deps: tuple[str, ...] = ()
        if self.job_keys:
            deps = tuple(self.query_one("#deps", SelectionList).selected)
        job_type = self.query_one("#type", Select).value
        assert isinstance(job_type, JobType)
        params: dict[str, Any] = {}
        if job_type is JobType.SEGMENT_CELLS:
            model = self.query_one("#model", Input).value.strip()
            if model:
                if "/" in model or model.endswith(".pt") or model[0] in ".~":
                    model = str(Path(model).expanduser().resolve())  # a path: made absolute
                params["model"] = model
            device = self.query_one("#device", Select).value
            if isinstance(device, str) and device != "auto":
                params["device"] = device
        self.dismiss(NewJob(key, job_type, slide, branch, deps, params))

    def on_mount(self) -> None:
        self._show_cells_options(self.query_one("#type", Select).value)

    @on(Select.Changed, "#type")
    def _type_changed(self, event: Select.Changed) -> None:
        self._show_cells_options(event.value)

    def _show_cells_options(self, job_type: object) -> None:
        self.query_one("#cells-opts").display = job_type is JobType.SEGMENT_CELLS

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


NEW_TENANT = "\x00new"


class TenantDialog(ModalScreen[str | None]):
    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, tenants: Sequence[str], current: str) -> None:
        super().__init__()
        self.tenants = sorted(set(tenants) | {current})
        self.current = current

    def compose(self) -> ComposeResult:
        options = [
            Option(t + ("  (current)" if t == self.current else ""), id=t) for t in self.tenants
        ]
        with Vertical():
            yield Label("Switch tenant", classes="title")
            yield OptionList(*options, Option("new tenant…", id=NEW_TENANT), id="tenants")
            yield Input(placeholder="new tenant id", id="new")
            yield Label("", classes="error", id="error")

    def on_mount(self) -> None:
        self.query_one("#new", Input).display = False
        tenants = self.query_one("#tenants", OptionList)
        tenants.highlighted = self.tenants.index(self.current)
        tenants.focus()

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == NEW_TENANT:
            new = self.query_one("#new", Input)
            new.display = True
            new.focus()
        else:
            self.dismiss(event.option.id)

    @on(Input.Submitted, "#new")
    def _new(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not SAFE_ID.match(value):
            self.query_one("#error", Label).update(f"tenant {value!r}: {SAFE_ID_HINT}")
            return
        self.dismiss(value)


class ConfirmDialog(ModalScreen[bool]):
    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [
        Binding("escape,n", "dismiss(False)", "No"),
        Binding("y", "dismiss(True)", "Yes"),
    ]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button("No (n)", id="no")
                yield Button(f"{self.yes} (y)", variant="warning", id="yes")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
