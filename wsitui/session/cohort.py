"""Cohorts: one workflow over many slides, named by globs or a CSV.

A workflow with `slides = ["cohort/*.svs"]` (globs relative to the config file) or
`slides = "cohort.csv"` (a table with a `path` column; its other columns are kept as slide
metadata) has jobs without a `slide`: they are a template run once per slide. Slide `s` gets
its own branch `s` (a lane: slides run side by side, each slide's chain in order) and job keys
`<s>-<template key>`; every scheduling rule applies unchanged, because after expansion a cohort
is an ordinary workflow.

A rerun of the same config finds the stored workflow by (tenant, name) as any workflow: a slide
already stored keeps its id (from its branch), so only new slides add jobs and unfinished ones
resume. Each slide's fingerprint (size + mtime, and sha256 with `match = "hash"`) is kept in
`<data dir>/cohorts/<workflow id>.json`: a slide whose file changed since its run, and one no
longer listed, are reported, never rerun or deleted.

Validation happens before anything runs; each problem is one line: a glob matching nothing
(what it matches that is no slide file is skipped and said), a slide listed twice, a CSV
without a `path` column, more jobs than `[limits]` admits.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsitui.core.digest import sha256_file
from wsitui.core.paths import file_kind
from wsitui.core.store import Store, nothing_stored
from wsitui.jobs.common.files import write_atomic
from wsitui.slides.synthetic.sidecar import TRUTH_SUFFIX

if TYPE_CHECKING:
    from wsitui.session.config import Config, WorkflowConfig

SLIDE_ID_MAX = 40  # a slide id is a branch name and the prefix of its job keys (64 at most)
TEMPLATE_KEY_MAX = 64 - SLIDE_ID_MAX - 1
MAX_CSV_BYTES = 64 * 1024 * 1024
INDEX_DIR = "cohorts"


class CohortError(Exception):
    """A cohort's slides cannot be listed as the config says; one line with the fix."""


def check_template(wf: WorkflowConfig) -> None:
    """Config-time rules: a cohort's jobs name no slide or branch; other jobs name a slide."""
    if wf.slides is None:
        for j in wf.jobs:
            if j.slide is None:
                raise ValueError(
                    f"job {j.id!r} has no slide; give its `slide`, or name the workflow's "
                    'slides with `slides = ["folder/*.svs"]` or `slides = "cohort.csv"`'
                )
        return
    if isinstance(wf.slides, list) and not wf.slides:
        raise ValueError('`slides` is empty; give at least one glob, e.g. ["cohort/*.svs"]')
    for pattern in [wf.slides] if isinstance(wf.slides, str) else wf.slides:
        if not pattern.strip() or "\x00" in pattern:
            raise ValueError(f"`slides` entry {pattern!r} is not a path or glob; fix it")
    for j in wf.jobs:
        if j.slide is not None:
            raise ValueError(
                f"job {j.id!r} names a slide, but `slides` names the workflow's slides; "
                "remove the job's `slide`"
            )
        if j.branch != "main":
            raise ValueError(
                f"job {j.id!r} sets a branch, but in a cohort each slide runs on its own "
                "branch; remove the job's `branch`"
            )
        if len(j.id) > TEMPLATE_KEY_MAX:
            raise ValueError(
                f"job id {j.id!r} is longer than {TEMPLATE_KEY_MAX} characters, the most a "
                "cohort's job id may have (the slide id is added to it); shorten it"
            )


def is_csv(source: str) -> bool:
    return source.lower().endswith(".csv")


def resolve_slide_sources(config: Config, path: Path, base: Path) -> Config:
    """Globs and the CSV of each cohort become absolute (relative ones to the config file)."""

    def absolute(pattern: str) -> str:
        return str(base / Path(pattern).expanduser())

    workflows = []
    for wf in config.workflows:
        if wf.slides is not None:
            src = wf.slides
            wf = wf.model_copy(
                update={
                    "slides": absolute(src) if isinstance(src, str) else [absolute(p) for p in src]
                }
            )
        workflows.append(wf)
    return config.model_copy(update={"workflows": workflows})


@dataclass(frozen=True)
class CohortSlide:
    id: str  # branch name and job-key prefix
    path: Path
    size: int  # -1: the file cannot be read (its chain fails with the reason)
    mtime_ns: int
    sha256: str | None = None
    meta: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": str(self.path),
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256,
            "meta": self.meta,
        }


@dataclass
class Cohort:
    """One config workflow's slides, expanded; `template`: its job keys in config order."""

    index: int
    tenant: str
    name: str
    template: tuple[str, ...]
    template_types: tuple[str, ...]
    slides: list[CohortSlide]
    meta_columns: tuple[str, ...] = ()
    match: str = "stat"
    stored_id: str | None = None  # the stored workflow a rerun resumes
    new: list[str] = field(default_factory=list)  # slide ids not stored before
    changed: list[str] = field(default_factory=list)  # one line each
    removed: list[dict[str, Any]] = field(default_factory=list)  # stored, no longer listed
    skipped: list[str] = field(default_factory=list)  # what its globs matched that is no slide

    @staticmethod
    def job_key(slide_id: str, key: str) -> str:
        return f"{slide_id}-{key}"

    def by_id(self) -> dict[str, CohortSlide]:
        return {s.id: s for s in self.slides}

    def notes(self) -> list[str]:
        """What the user should hear about this cohort before it runs, one line each: entries
        its globs skipped, then a rerun's changed, new and removed slides."""
        where = f"{self.tenant}/{self.name}"
        out = [*self.skipped, *self.changed]
        if self.stored_id is not None and (self.new or self.changed or self.removed):
            # Said only when the list moved: a rerun of the same list is no news (the TUI
            # toasted "0 new slides" at every start).
            out.append(
                f"{where}: {len(self.new)} new slide{'s' if len(self.new) != 1 else ''} of "
                f"{len(self.slides)}; the others keep their jobs and results"
            )
        for old in self.removed:
            out.append(
                f"{where}: slide {old['path']} is no longer listed; its results are kept "
                f"(slide id {old['id']})"
            )
        return out

    def index_data(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "name": self.name,
            "template": list(self.template),
            "template_types": list(self.template_types),
            "meta_columns": list(self.meta_columns),
            "match": self.match,
            "slides": [{**s.fingerprint(), "present": True} for s in self.slides]
            + [{**old, "present": False} for old in self.removed],
        }


def index_path(data_dir: Path, workflow_id: str) -> Path:
    return data_dir / INDEX_DIR / f"{workflow_id}.json"


def write_index(data_dir: Path, workflow_id: str, cohort: Cohort) -> None:
    path = index_path(data_dir, workflow_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(cohort.index_data(), indent=1).encode())


def read_index(data_dir: Path, workflow_id: str) -> dict[str, Any] | None:
    """The stored cohort index of a workflow; None when it is not a cohort (or unreadable)."""
    try:
        data = json.loads(index_path(data_dir, workflow_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("slides"), list) else None


# -- listing slides ------------------------------------------------------------------------


SKIPPED_SHOWN = 3  # entries a skip line names; the rest are counted


def _glob(pattern: str, where: str, notes: list[str]) -> list[Path]:
    """The regular files `pattern` matches. What else it matches (a directory, a FIFO, a
    socket, a broken or looping symlink, a sample's NAME.truth.npz) is no slide: skipped,
    said in one line per pattern (never opened: a FIFO would block). A file this process
    cannot read stays a slide (its chain fails with the reason) and is said too, so nobody
    waits for it to run."""
    hits = sorted(glob.glob(pattern, recursive=True))  # noqa: PTH207 - an absolute pattern
    files: list[Path] = []
    skipped: list[str] = []
    unreadable: list[str] = []
    found: dict[Path, str] = {}  # resolved -> the hit that matched it first
    twice: list[str] = []  # a second name of a file matched (a symlink beside its target)
    for hit in hits:
        try:
            mode = Path(hit).stat().st_mode
            resolved = Path(hit).resolve()
        except (OSError, RuntimeError) as exc:  # a broken symlink, a loop, a path we may not stat
            skipped.append(f"{hit}: {getattr(exc, 'strerror', None) or 'cannot be read'}")
            continue
        if resolved in found:  # a symlink beside its target: one slide, run once (it said
            # "listed twice (glob G and glob G)", a list the user never wrote twice)
            twice.append(f"{hit} is {found[resolved]}")
            continue
        found[resolved] = hit
        if not stat.S_ISREG(mode):
            skipped.append(f"{hit}: {file_kind(mode)}")
            continue
        if hit.endswith(TRUTH_SUFFIX):  # `wsitui sample` writes it beside its slide
            skipped.append(f"{hit}: a sample slide's ground truth")
            continue
        if not os.access(hit, os.R_OK):
            unreadable.append(hit)
        files.append(Path(hit))
    if not files:
        what = "no file" if not hits else f"no slide file, only {_names(skipped)}"
        raise CohortError(f"{where}: slides glob {pattern} matches {what}; check the pattern")
    if skipped:
        notes.append(
            f"{where}: slides glob {pattern} matches {len(skipped)} "
            f"entr{'y' if len(skipped) == 1 else 'ies'} that {'is' if len(skipped) == 1 else 'are'}"
            f" not a slide file, skipped: {_names(skipped)}"
        )
    if twice:
        notes.append(
            f"{where}: slides glob {pattern} matches {len(twice)} file"
            f"{'s' if len(twice) > 1 else ''} under a second name (a link), run once: "
            f"{_names(twice)}"
        )
    if unreadable:
        notes.append(
            f"{where}: slide{'s' if len(unreadable) > 1 else ''} {_names(unreadable)} "
            f"cannot be read (permission denied): {'its' if len(unreadable) == 1 else 'their'}"
            " chain fails; fix the permissions and run the config again"
        )
    return files


def _names(entries: list[str]) -> str:
    shown = "; ".join(entries[:SKIPPED_SHOWN])
    more = len(entries) - SKIPPED_SHOWN
    return shown + (f" and {more:,} more" if more > 0 else "")


def _delimiter(text: str) -> str:
    """The CSV's separator: a comma, else `;` (as a spreadsheet in a locale with a decimal
    comma saves a CSV) or a tab, whichever splits the header into a `path` column."""
    first = next(iter(text.splitlines()), "")
    for delimiter in (",", ";", "\t"):
        try:
            header = next(csv.reader([first], delimiter=delimiter), [])
        except csv.Error:
            continue
        if "path" in (h.strip().lower() for h in header):  # `Path`: refused after, by name
            return delimiter
    return ","


def _read_csv(source: str, where: str) -> tuple[list[tuple[Path, dict[str, str], str]], tuple]:
    path = Path(source)
    try:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise CohortError(f"{where}: slides CSV {path} not found; check the path") from None
        if not stat.S_ISREG(st.st_mode):
            raise CohortError(
                f"{where}: slides CSV {path} is {file_kind(st.st_mode)}, not a regular file; "
                "give a CSV file"
            )
        if st.st_size > MAX_CSV_BYTES:
            raise CohortError(f"{where}: slides CSV {path} is over 64 MiB; split the cohort")
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CohortError(
            f"{where}: slides CSV {path} is not UTF-8 text; save it as UTF-8"
        ) from None
    except OSError as exc:
        raise CohortError(f"{where}: slides CSV {path} cannot be read ({exc.strerror})") from None
    try:
        reader = csv.DictReader(text.splitlines(), delimiter=_delimiter(text))
        header = [h.strip() for h in (reader.fieldnames or [])]
        if header.count("path") > 1:  # csv.DictReader kept the last one's values, silently
            raise CohortError(
                f"{where}: slides CSV {path} has {header.count('path')} `path` columns; keep one"
            )
        if "path" not in header:
            near = next((h for h in header if h.lower() == "path"), None)
            fix = f"rename `{near}` to `path`" if near else "add a header row with `path`"
            raise CohortError(
                f"{where}: slides CSV {path} has no `path` column (columns: "
                f"{', '.join(header) or 'none'}); {fix}"
            )
        reader.fieldnames = header
        meta_cols = tuple(h for h in header if h != "path" and h)
        _check_meta_columns(meta_cols, path, where)
        rows = []
        for n, row in enumerate(reader, start=2):
            # csv.DictReader's key for the fields past the header's (empty ones are harmless)
            if any(v.strip() for v in row.get(None) or ()):
                raise CohortError(
                    f"{where}: slides CSV {path} line {n} has more fields than its header "
                    f"({len(header)}); quote a value that holds the separator "
                    f'{reader.reader.dialect.delimiter!r}, e.g. "a,b.svs"'
                )
            value = (row.get("path") or "").strip()
            if not value:
                raise CohortError(f"{where}: slides CSV {path} line {n} has an empty `path`")
            if "\x00" in value:
                raise CohortError(
                    f"{where}: slides CSV {path} line {n} has a NUL byte in its `path`; "
                    "fix that line"
                )
            slide = path.parent / Path(value).expanduser()
            meta = {c: (row.get(c) or "").strip() for c in meta_cols}
            rows.append((slide, meta, f"line {n}"))
    except csv.Error as exc:
        raise CohortError(f"{where}: slides CSV {path} is not valid CSV ({exc})") from None
    if not rows:
        raise CohortError(f"{where}: slides CSV {path} lists no slide; add rows")
    return rows, meta_cols


def _check_meta_columns(meta_cols: tuple[str, ...], path: Path, where: str) -> None:
    """A metadata column is a column of the cohort's summary.csv: one named like a column the
    summary writes itself (`slide_id`, `state`, ...) would appear twice there, and a user's
    `slide_id` overwrote the real one."""
    from wsitui.session.cohort_summary import VALUE_COLUMNS  # imports this module

    reserved = {"slide_id", "path", *(c for c, _ in VALUE_COLUMNS)}
    for column in meta_cols:
        if column in reserved:
            raise CohortError(
                f"{where}: slides CSV {path} has a column `{column}`, which summary.csv writes "
                f"itself; rename it (e.g. `my_{column}`)"
            )
    seen: set[str] = set()
    for column in meta_cols:
        if column in seen:
            raise CohortError(
                f"{where}: slides CSV {path} has two columns named `{column}`; rename one"
            )
        seen.add(column)


def list_slides(
    wf: WorkflowConfig, where: str, notes: list[str] | None = None
) -> tuple[list[tuple[Path, dict[str, str]]], tuple]:
    """(resolved path, metadata) per slide in listing order, and the metadata columns; what a
    glob matched and skipped is added to `notes`, one line each."""
    notes = [] if notes is None else notes
    src = wf.slides
    assert src is not None
    if isinstance(src, str) and is_csv(src):
        entries, meta_cols = _read_csv(src, where)
        _check_rows_exist(entries, Path(src), where)
    else:
        meta_cols = ()
        entries = [
            (p, {}, f"glob {pattern}")
            for pattern in ([src] if isinstance(src, str) else src)
            for p in _glob(pattern, where, notes)
        ]
    seen: dict[Path, str] = {}
    out = []
    for path, meta, origin in entries:
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as exc:
            raise CohortError(f"{where}: slide {path} cannot be resolved ({exc}); fix it") from None
        if resolved in seen:
            raise CohortError(
                f"{where}: slide {resolved} is listed twice ({seen[resolved]} and {origin}); "
                "list each slide once"
            )
        seen[resolved] = origin
        out.append((resolved, meta))
    return out, meta_cols


def _check_rows_exist(
    entries: list[tuple[Path, dict[str, str], str]], csv_path: Path, where: str
) -> None:
    """A CSV row naming no file is refused, by its line, all such rows in one line: the
    engine's check named a job the user never wrote (`job 'missing-mask': slide ... does not
    exist`), one row per run. A file that exists but cannot be read stays a slide (its chain
    fails with the reason)."""
    missing = []
    for path, _, origin in entries:
        try:
            if not path.exists():
                missing.append(f"{origin} {path.name}")
        except OSError:  # e.g. a name too long: the slide check names it
            pass
    if missing:
        shown = ", ".join(missing[:SKIPPED_SHOWN])
        more = f" and {len(missing) - SKIPPED_SHOWN:,} more" if len(missing) > SKIPPED_SHOWN else ""
        n = len(missing)
        raise CohortError(
            f"{where}: slides CSV {csv_path}: {n:,} slide{'s' if n > 1 else ''} "
            f"{'do' if n > 1 else 'does'} not exist ({shown}{more}); fix the "
            f"path{'s' if n > 1 else ''} or remove the line{'s' if n > 1 else ''}"
        )


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _base_id(path: Path) -> str:
    stem = path.name.split(".")[0] if not path.name.startswith(".") else path.name
    # Accents off first: "café-Ä1" was "caf_-_1" (every non-ASCII letter a "_"), now "cafe-A1".
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    sid = _UNSAFE.sub("_", stem).lstrip("_-")[:SLIDE_ID_MAX].rstrip("_-")
    return sid or "slide"


def new_slide_id(path: Path, taken: set[str]) -> str:
    """An id from the file name; a short hash of the path tells apart names that clash."""
    sid = _base_id(path)
    if sid not in taken:
        return sid
    digest = hashlib.sha1(str(path).encode()).hexdigest()
    for n in range(6, 41):
        candidate = f"{sid[: SLIDE_ID_MAX - n - 1]}-{digest[:n]}"
        if candidate not in taken:
            return candidate
    raise CohortError(f"slide {path}: no free slide id; rename the file")  # never in practice


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return -1, 0
    return st.st_size, st.st_mtime_ns


# -- expansion -----------------------------------------------------------------------------


@dataclass
class _Stored:
    workflow_id: str
    ids: dict[str, str]  # slide path -> slide id (its branch)
    index: dict[str, Any] | None


def _stored_cohorts(config: Config, data_dir: Path) -> dict[tuple[str, str], _Stored]:
    names = {(wf.tenant, wf.name) for wf in config.workflows if wf.slides is not None}
    db = data_dir / "state.db"
    if not names or not db.is_file() or nothing_stored(db):
        return {}
    store = Store(db, readonly=True)
    try:
        wanted = {
            w.id: (w.tenant, w.name) for w in store.workflows() if (w.tenant, w.name) in names
        }
        ids: dict[str, dict[str, str]] = {w: {} for w in wanted}
        if wanted:
            for job in store.jobs():
                if job.workflow_id in ids:
                    ids[job.workflow_id].setdefault(job.slide, job.branch)
    finally:
        store.close()
    return {
        key: _Stored(wf_id, ids[wf_id], read_index(data_dir, wf_id))
        for wf_id, key in wanted.items()
    }


def _check_limits(config: Config, wf: WorkflowConfig, where: str, n_slides: int) -> None:
    jobs = n_slides * len(wf.jobs)
    lim = config.limits
    caps = [
        ("max_queued_per_tenant", lim.max_queued_per_tenant),
        ("max_queued", lim.max_queued),
    ]
    if lim.rate and lim.burst:
        caps.append(("burst", lim.burst))  # the whole cohort is submitted at once
    for key, cap in caps:
        if cap and jobs > cap:
            raise CohortError(
                f"{where}: {n_slides:,} slides × {len(wf.jobs)} jobs = {jobs:,} jobs, more than "
                f"[limits] {key} = {cap:,} allows; raise it or split the cohort"
            )


def expand_cohorts(config: Config, data_dir: Path) -> tuple[Config, dict[int, Cohort]]:
    """Each cohort workflow with one chain of its template's jobs per slide."""
    stored = _stored_cohorts(config, data_dir)
    cohorts: dict[int, Cohort] = {}
    workflows = []
    for i, wf in enumerate(config.workflows):
        if wf.slides is None:
            workflows.append(wf)
            continue
        where = f"workflows[{i}] ({wf.tenant}/{wf.name})"
        skipped: list[str] = []
        listed, meta_cols = list_slides(wf, where, skipped)
        _check_limits(config, wf, where, len(listed))
        cohort = _expand_one(i, wf, listed, meta_cols, stored.get((wf.tenant, wf.name)))
        cohort.skipped = skipped
        cohorts[i] = cohort
        jobs = [
            j.model_copy(
                update={
                    "id": Cohort.job_key(s.id, j.id),
                    "slide": s.path,
                    "branch": s.id,
                    "depends_on": [Cohort.job_key(s.id, d) for d in j.depends_on],
                }
            )
            for s in cohort.slides
            for j in wf.jobs
        ]
        workflows.append(wf.model_copy(update={"jobs": jobs}))
    return config.model_copy(update={"workflows": workflows}), cohorts


def _expand_one(
    i: int,
    wf: WorkflowConfig,
    listed: list[tuple[Path, dict[str, str]]],
    meta_cols: tuple,
    stored: _Stored | None,
) -> Cohort:
    ids = dict(stored.ids) if stored else {}
    old = {}
    if stored and stored.index:
        old = {e["path"]: e for e in stored.index["slides"] if isinstance(e, dict) and "path" in e}
        for path, entry in old.items():  # ids of slides stored before any job was (rare)
            ids.setdefault(path, str(entry.get("id", "")))
    taken = set(ids.values())
    cohort = Cohort(
        index=i,
        tenant=wf.tenant,
        name=wf.name,
        template=tuple(j.id for j in wf.jobs),
        template_types=tuple(str(j.type) for j in wf.jobs),
        slides=[],
        meta_columns=tuple(meta_cols),
        match=wf.match,
        stored_id=stored.workflow_id if stored else None,
    )
    where = f"{wf.tenant}/{wf.name}"
    for path, meta in listed:
        size, mtime_ns = _stat(path)
        sid = ids.get(str(path))
        before = old.get(str(path))
        digest = None
        if sid is None:
            sid = new_slide_id(path, taken)
            taken.add(sid)
            cohort.new.append(sid)
            if wf.match == "hash" and size >= 0:
                digest = sha256_file(path)
        elif before is not None and (before.get("size"), before.get("mtime_ns")) != (
            size,
            mtime_ns,
        ):
            digest = before.get("sha256")
            if wf.match == "hash" and size >= 0:
                digest = sha256_file(path)
                same = digest == before.get("sha256")
            else:
                same = False
            if not same:  # keep the fingerprint of the file the results came from
                size, mtime_ns = int(before.get("size", -1)), int(before.get("mtime_ns", 0))
                digest = before.get("sha256")
                cohort.changed.append(
                    f"{where}: slide {path} changed since its run (size or mtime"
                    f"{' and content' if wf.match == 'hash' else ''} differ); its results "
                    "are kept as they are; rename the workflow to run the cohort anew"
                )
        elif before is not None:
            digest = before.get("sha256")
        cohort.slides.append(CohortSlide(sid, path, size, mtime_ns, digest, meta))
    listed_paths = {str(s.path) for s in cohort.slides}
    for path, sid in sorted(ids.items(), key=lambda kv: kv[1]):
        if path not in listed_paths:
            entry = dict(old.get(path) or {"id": sid, "path": path})
            entry.pop("present", None)
            cohort.removed.append(entry)
    return cohort
