"""Modal dialogs: new workflow, add job, switch tenant, confirm (about a job: kept current)."""

from __future__ import annotations

import platform
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from annotated_types import MaxLen
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import Suggester, SuggestFromList
from textual.widgets import Button, Input, Label, OptionList, Select, SelectionList
from textual.widgets.option_list import Option

from wsitui.core.executor import DialogField
from wsitui.core.records import SAFE_ID, SAFE_ID_HINT, Job, WorkflowSpec, check_workflow_name
from wsitui.jobs import registry
from wsitui.models.device import cuda_device_count
from wsitui.models.source import looks_like_path
from wsitui.slides.errors import SlideError
from wsitui.slides.reader import open_slide

SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".vms", ".vmu", ".scn", ".bif", ".svslide",
    ".dcm", ".png", ".jpg", ".jpeg",
)  # fmt: skip

R = TypeVar("R")
NAME_MAX = next(
    m.max_length for m in WorkflowSpec.model_fields["name"].metadata if isinstance(m, MaxLen)
)


class Dialog(ModalScreen[R]):
    """A bordered box centred over the dimmed main screen; every dialog is one.

    Textual scopes a screen's DEFAULT_CSS under the class that defines it, so rules written for
    `ModalScreen` in each subclass never matched (dialogs were drawn unstyled from the top-left):
    the rules live here, once, unscoped, and select `Dialog`, which every subclass is."""

    SCOPED_CSS = False
    DEFAULT_CSS = """
    Dialog { align: center middle; }
    Dialog > .dialog-box {
        width: 72; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $surface; padding: 0 1;
        scrollbar-size-vertical: 1;
    }
    Dialog .title { text-style: bold; width: 1fr; margin-bottom: 1; }
    Dialog .hint { color: $text-muted; width: 1fr; }
    Dialog .keys { color: $text-muted; margin-top: 1; width: 1fr; }
    Dialog SelectionList { max-height: 4; }
    Dialog .problem { color: $error; height: auto; width: 1fr; }
    Dialog Horizontal.buttons { height: 1; margin-top: 1; align-horizontal: right; }
    Dialog Button { margin-left: 1; }
    Dialog Input, Dialog Select { background: $boost; }
    Dialog #model-opts { height: auto; }
    Dialog .model-row { height: auto; }
    Dialog .model-row Input { width: 1fr; }
    Dialog .model-row Select { width: 26; margin-left: 1; }
    """


def box() -> VerticalScroll:
    """The dialog's bordered box: scrolls when its text is taller than the terminal."""
    return VerticalScroll(classes="dialog-box", can_focus=False)


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


class NewWorkflowDialog(Dialog[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, taken: Collection[str] = ()) -> None:
        """`taken`: names this tenant's workflows (stored, or in the config) already have. A
        second workflow of one name would be taken for the config's by `wsitui run`, which
        matches workflows by tenant and name."""
        super().__init__()
        self.taken = frozenset(taken)

    def compose(self) -> ComposeResult:
        with box():
            yield Label("New workflow", classes="title")
            yield Input(placeholder="name, e.g. cohort-3 masks", id="name")
            error = Label("", id="error", classes="problem")
            error.display = False  # takes a line only once it has something to say
            yield error
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Create", variant="primary", id="ok", compact=True)

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        if len(name) > NAME_MAX:  # said here, with the name kept: it was refused after Create,
            # as pydantic's three-line "1 validation error for WorkflowSpec" in a toast
            error = self.query_one("#error", Label)
            error.update(f"the name has {len(name)} characters; shorten it to at most {NAME_MAX}")
            error.display = True
            return
        problem = ""
        if name:
            try:
                check_workflow_name(name)  # a pasted control or bidi character
            except ValueError as exc:
                problem = str(exc)
        if problem:
            error = self.query_one("#error", Label)
            error.update(Text(problem))  # as text: a name may hold "[" (markup)
            error.display = True
            return
        if name in self.taken:
            error = self.query_one("#error", Label)
            error.update(f"this tenant has a workflow named {name!r}; choose another name")
            error.display = True
            return
        if name:
            self.dismiss(name)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class NewJob:
    key: str
    job_type: str
    slide: str
    branch: str
    depends_on: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)


MODEL_NAMES = ("shipped", "classical", "brightfield_nuclei")


class ModelSuggester(Suggester):
    """Completes a model param: a known name, or a path to a folder or .pt file."""

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


@dataclass(frozen=True)
class Devices:
    """What this machine has for a model, found without importing torch (the dialog must
    open at once): NVIDIA GPUs from the driver, MPS on Apple silicon."""

    gpus: int
    mps: bool

    @classmethod
    def probe(cls) -> Devices:
        # The GPUs the scheduler counts too: narrowed by CUDA_VISIBLE_DEVICES when it lists some.
        gpus = cuda_device_count()
        return cls(gpus, sys.platform == "darwin" and platform.machine() == "arm64")

    def options(self) -> list[tuple[str, str]]:
        """(label, device) for the picker: every device a job can ask for, ✓ where present."""
        best = "cuda" if self.gpus else "mps" if self.mps else "cpu"
        options = [(f"auto (→ {best})", "auto"), ("cpu ✓", "cpu")]
        options.append(("cuda ✓" if self.gpus else "cuda (none here)", "cuda"))
        options += [(f"cuda:{i} ✓", f"cuda:{i}") for i in range(self.gpus if self.gpus > 1 else 0)]
        options.append(("mps ✓" if self.mps else "mps (none here)", "mps"))
        return options


def check_slide(path: str) -> str | None:
    """None when `path` opens as a slide, else the one-line reason (run off the UI thread)."""
    try:
        open_slide(path).close()
    except SlideError as exc:
        return str(exc)
    return None


class AddJobDialog(Dialog[NewJob | None]):
    """Everything is checked here, the slide too (it is opened off the UI thread): an error
    keeps the dialog open with what was typed, and goes away once the field is changed.
    F2 (or the View button) opens the slide viewer on the typed path, to check it is the
    right slide; esc there comes back here with everything as typed."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("f2", "view", "View slide"),
    ]

    def __init__(
        self,
        workflow_name: str,
        job_keys: Sequence[str],
        branches: Sequence[str],
        devices: Devices | None = None,
    ) -> None:
        super().__init__()
        self.workflow_name = workflow_name
        self.job_keys = list(job_keys)
        self.branches = list(branches)
        self.devices = devices or Devices.probe()

    def compose(self) -> ComposeResult:
        n = len(self.job_keys) + 1
        with box():
            yield Label(Text(f"Add a job to {self.workflow_name}"), classes="title")
            yield Label(
                "Slide path (→ accepts the completion: folders and slide files)",
                classes="hint",
            )
            yield Input(
                placeholder="path/to/slide.svs",
                id="slide",
                suggester=SlidePathSuggester(),
                compact=True,
            )
            yield Label("Job type", classes="hint")
            names = registry.job_type_names()
            yield Select(
                [(name, name) for name in names],
                value=names[0],
                allow_blank=False,
                id="type",
                compact=True,
            )
            with Vertical(id="model-opts"):
                yield Label(
                    "Model (shipped, classical, folder, .pt) · device (✓ here)",
                    classes="hint",
                )
                with Horizontal(classes="model-row"):
                    yield Input(
                        placeholder="shipped", id="model", suggester=ModelSuggester(), compact=True
                    )
                    yield Select(
                        self.devices.options(),
                        value="auto",
                        allow_blank=False,
                        id="device",
                        compact=True,
                    )
            if self.branches:
                hint = f"Branch (existing: {', '.join(self.branches)})"
            else:
                hint = "Branch (a lane; jobs in one branch run one after another)"
            yield Label(Text(hint), classes="hint")
            yield Input(
                value=self.branches[0] if self.branches else "main",
                id="branch",
                suggester=SuggestFromList(self.branches),
                compact=True,
            )
            yield Label("Job id", classes="hint")
            yield Input(value=f"job{n}", id="key", compact=True)
            if self.job_keys:
                yield Label("Depends on", classes="hint")
                yield SelectionList[str](*[(k, k) for k in self.job_keys], id="deps", compact=True)
            yield Label("", classes="problem", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("View (F2)", id="view", compact=True)
                yield Button("Add", variant="primary", id="ok", compact=True)

    def _error(self, text: str) -> None:
        self.query_one("#error", Label).update(Text(text))

    @on(Input.Changed)
    @on(Select.Changed)
    def _edited(self) -> None:
        self._error("")  # a fixed field never keeps the old complaint

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted)
    def _ok(self) -> None:
        slide = self.query_one("#slide", Input).value.strip()
        slide = str(Path(slide).expanduser()) if slide else ""
        branch = self.query_one("#branch", Input).value.strip()
        key = self.query_one("#key", Input).value.strip()
        if not slide:
            self._error("give the path of a slide file")
            return
        for kind, value in (("branch", branch), ("job id", key)):
            if not SAFE_ID.match(value):
                self._error(f"{kind} {value!r} is not allowed: {SAFE_ID_HINT}")
                return
        if key in self.job_keys:
            self._error(f"job id {key!r} is already used in this workflow")
            return
        deps: tuple[str, ...] = ()
        if self.job_keys:
            deps = tuple(self.query_one("#deps", SelectionList).selected)
        job_type = self.query_one("#type", Select).value
        assert isinstance(job_type, str)
        params: dict[str, Any] = {}
        fields = _dialog_fields(job_type)
        if DialogField.MODEL in fields:
            model = self.query_one("#model", Input).value.strip()
            if model:
                if looks_like_path(model):
                    model = str(Path(model).expanduser().resolve())  # a path: made absolute
                params["model"] = model
        if DialogField.DEVICE in fields:
            device = self.query_one("#device", Select).value
            if isinstance(device, str) and device != "auto":
                params["device"] = device
        self._error(f"opening {Path(slide).name}…")
        self._check_and_close(NewJob(key, job_type, slide, branch, deps, params))

    @work(exclusive=True, group="add-job")
    async def _check_and_close(self, new: NewJob) -> None:
        problem = await anyio.to_thread.run_sync(lambda: check_slide(new.slide))
        if problem is not None:
            self._error(problem)
            self.query_one("#slide", Input).focus()
            return
        self.dismiss(new)

    def on_mount(self) -> None:
        self._show_type_fields(self.query_one("#type", Select).value)

    @on(Select.Changed, "#type")
    def _type_changed(self, event: Select.Changed) -> None:
        self._show_type_fields(event.value)

    def _show_type_fields(self, job_type: object) -> None:
        """The model and device fields show for a job type that takes them."""
        fields = _dialog_fields(job_type) if isinstance(job_type, str) else frozenset()
        self.query_one("#model-opts").display = bool(fields)
        self.query_one("#model").display = DialogField.MODEL in fields
        self.query_one("#device").display = DialogField.DEVICE in fields

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#view")
    def action_view(self) -> None:
        """The viewer on the typed slide (no overlays: the job has not run yet)."""
        from wsitui.tui.screens.viewer import ViewerScreen

        slide = self.query_one("#slide", Input).value.strip()
        if not slide:
            self._error("give the path of a slide file to view")
            return
        path = Path(slide).expanduser()
        protocol = getattr(self.app, "image_protocol", "auto")
        self.app.push_screen(ViewerScreen(path, protocol=protocol, title=path.name))


def _dialog_fields(job_type: str) -> frozenset[DialogField]:
    executor = registry.executor_class(job_type)
    return executor.dialog_fields if executor is not None else frozenset()


NEW_TENANT = "\x00new"


class TenantDialog(Dialog[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, tenants: Sequence[str], current: str) -> None:
        super().__init__()
        self.tenants = sorted(set(tenants) | {current})
        self.current = current

    def compose(self) -> ComposeResult:
        options = [
            Option(t + ("  (current)" if t == self.current else ""), id=t) for t in self.tenants
        ]
        with box():
            yield Label("Switch tenant", classes="title")
            yield OptionList(*options, Option("new tenant…", id=NEW_TENANT), id="tenants")
            yield Input(placeholder="new tenant id", id="new")
            yield Label("", classes="problem", id="error")
            yield Label("↑↓ choose · enter: switch · esc: cancel", classes="keys")

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


class ConfirmDialog(Dialog[bool]):
    """A yes/no question; `again` names the key that asked it, which then confirms too (q, q)."""

    BINDINGS = [
        Binding("escape,n", "dismiss(False)", "No"),
        Binding("y", "dismiss(True)", "Yes"),
    ]

    def __init__(self, question: str, yes: str = "Yes", again: str | None = None) -> None:
        super().__init__()
        if again:
            self._bindings.bind(again, "dismiss(True)", "Yes", show=False)
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with box():
            yield Label(Text(self.question), classes="title")
            with Horizontal(classes="buttons"):
                yield Button("No (n)", id="no", compact=True)
                yield Button(f"{self.yes} (y)", variant="warning", id="yes", compact=True)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


def quit_question(running: int) -> str:
    if not running:
        return "No job runs now. Quit? (q again or y quits)"
    return (
        f"{running} job(s) running. Quit? They stop at their next tile; their state is on "
        "disk and they resume at the next start. (q again or y quits)"
    )


class QuitDialog(ConfirmDialog):
    """Quit while jobs run: the question follows how many run (the app hands it the count at
    every redraw). It said "2 job(s) running" after both had ended."""

    def __init__(self, running: int) -> None:
        super().__init__(quit_question(running), yes="Quit", again="q")
        self.running = running

    def running_changed(self, running: int) -> None:
        if running != self.running:
            self.running = running
            self.query_one(".title", Label).update(Text(quit_question(running)))


class JobConfirmDialog(ConfirmDialog):
    """A question about one job as it was when asked (cancel it while it runs, run it again
    once it succeeded). The app hands it the job's every new snapshot: once the job is no
    longer in that state (it finished, failed or started again while the question was open),
    the question says so and its yes button goes; the app never acts on a stale answer."""

    def __init__(self, question: str, yes: str, job: Job, verb: str) -> None:
        super().__init__(question, yes=yes)
        self.job = job
        self.verb = verb  # "cancel", "run again": what would no longer be done
        self.asked = (job.state, job.attempt)

    def is_stale(self, job: Job) -> bool:
        return (job.state, job.attempt) != self.asked

    def job_changed(self, job: Job) -> None:
        if not self.is_stale(job) or job == self.job:
            return
        self.job = job
        now = f"{job.state}" + (f" (attempt {job.attempt})" if job.attempt != self.asked[1] else "")
        self.query_one(".title", Label).update(
            Text(f"{job.key} is {now} now: there is nothing to {self.verb} (any key closes).")
        )
        yes = self.query(Button).filter("#yes")
        if yes:
            yes.first().remove()
        self.query_one("#no", Button).label = "Close (n)"

    def on_key(self, event: events.Key) -> None:
        if self.is_stale(self.job):
            event.stop()
            self.dismiss(False)
