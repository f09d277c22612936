"""`wsitui model list | train | eval`: exposed as `add_model_commands(subparsers)` and
`run_model_command(args) -> int` for `wsitui/cli.py` to wire in. Imports nothing heavy at
parser build time (`wsitui --help` stays fast); torch is imported inside the commands.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from wsitui.core.paths import path_arg as _path
from wsitui.models.errors import ModelError
from wsitui.models.heldout import DENSE_LOOKS, HELDOUT_LOOKS


def _device(text: str) -> str:
    """`--device`, checked whatever the model: `classical --device tpu` ran and said nothing."""
    from wsitui.models.device import check_device_name

    try:
        return check_device_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_model_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add `model` with its subcommands to a `wsitui` subparsers object."""
    model = subparsers.add_parser("model", help="list, train or evaluate segmentation models")
    sub = model.add_subparsers(dest="model_command", metavar="MODEL_COMMAND")
    model.set_defaults(model_parser=model)

    ls = sub.add_parser("list", help="the shipped, cached and configured models")
    ls.add_argument("--config", type=_path, help="also list the models this config names")
    ls.add_argument(
        "--model-dir", type=_path, help="model cache dir (default $WSITUI_MODEL_DIR or XDG cache)"
    )
    ls.add_argument("--json", action="store_true", help="machine-readable output")

    tr = sub.add_parser("train", help="train a small InstanSeg model on generated images (CPU)")
    tr.add_argument("--out", type=_path, required=True, help="output folder (gets instanseg.pt)")
    tr.add_argument("--steps", type=int, default=2500, help="optimiser steps (default 2500)")
    tr.add_argument("--seed", type=int, default=0, help="seed of data and weights (default 0)")
    tr.add_argument("--batch", type=int, default=4, help="images per step (default 4)")
    tr.add_argument("--patch", type=int, default=128, help="training crop in px (default 128)")
    tr.add_argument("--pool", type=int, default=1500, help="generated patches (default 1500)")
    tr.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    tr.add_argument(
        "--tune-images",
        type=int,
        default=0,
        help="tune post-processing on N tuning images by F1 at IoU >= 0.5 (default 0: no; 16: all)",
    )
    tr.add_argument(
        "--normalization", choices=("fixed", "percentile"), default="fixed", help="input scaling"
    )
    tr.add_argument(
        "--negatives", type=float, default=0.15, help="share of styles with no nuclei (0.15)"
    )
    tr.add_argument(
        "--tumour", type=float, default=0.0, help="share of tumour-style looks (default 0)"
    )
    tr.add_argument(
        "--dense",
        type=float,
        default=0.35,  # TrainConfig.dense (not imported here: the CLI starts without the trainer)
        help="share of dense-style looks: packed, touching nuclei (default 0.35)",
    )
    tr.add_argument(
        "--specks",
        type=float,
        default=0.0,
        help="share of looks with pale purple specks and blobs that are not nuclei (default 0)",
    )
    tr.add_argument(
        "--dark-nests",
        type=float,
        default=0.0,
        help="share of looks with big dark nuclei packed in dark cytoplasm (default 0)",
    )
    tr.add_argument("--init", type=_path, help="warm start from this exported model's weights")
    tr.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    tr.add_argument("--eval", action="store_true", help="print held-out F1 when done")

    ev = sub.add_parser(
        "eval",
        help="held-out detection scores per look on whole generated slides, beside classical",
    )
    ev.add_argument("model", nargs="?", default="shipped", help="name, folder, .pt or classical")
    ev.add_argument(
        "--looks",
        default=",".join(HELDOUT_LOOKS),
        help=f"comma-separated looks: named ones or dense0-{DENSE_LOOKS[-1]} (dense_style looks "
        f"of a held-out stream; README's four fresh dense looks are dense0-dense3) (default "
        f"{','.join(HELDOUT_LOOKS)})",
    )
    ev.add_argument("--seeds", type=int, default=1, help="slides per look (default 1)")
    ev.add_argument("--size", default="1024x1024", help="slide size WxH in px (default 1024x1024)")
    ev.add_argument(
        "--no-baseline", action="store_true", help="skip the classical fallback beside it"
    )
    ev.add_argument(
        "--images",
        type=int,
        default=None,
        help="instead: pooled F1 on N held-out 256² crops (the old quick check)",
    )
    ev.add_argument("--device", type=_device, default="cpu", help="auto, cpu, cuda, cuda:N or mps")
    ev.add_argument("--model-dir", type=_path, help="model cache dir")
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    return model


def _err(msg: str) -> int:
    print(f"wsitui model: {msg}", file=sys.stderr)
    return 2


def run_model_command(args: argparse.Namespace) -> int:
    """Exit 0 on success, 2 on bad input or an unusable model (one line on stderr)."""
    cmd = getattr(args, "model_command", None)
    try:
        if cmd == "list":
            return _list(args)
        if cmd == "train":
            return _train(args)
        if cmd == "eval":
            return _eval(args)
    except ModelError as exc:
        return _err(str(exc))
    except KeyboardInterrupt:
        print("wsitui model: interrupted", file=sys.stderr)
        return 130
    parser = getattr(args, "model_parser", None)
    if parser is not None:
        parser.print_help(sys.stderr)
    return 2


def _configured(config: Path) -> list[tuple[str, Path]]:
    from wsitui.session.config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise ModelError(str(exc)) from None
    base = config.resolve().parent
    out = []
    for wf in cfg.workflows:
        for job in wf.jobs:
            value = job.params.get("model")
            if isinstance(value, str):
                out.append((value, base))
    return out


def _list(args: argparse.Namespace) -> int:
    from wsitui.models.catalog import list_models
    from wsitui.models.source import cache_dir

    cache = cache_dir(args.model_dir)
    entries = list_models(cache, _configured(args.config) if args.config else None)
    if args.json:
        print(json.dumps({"cache_dir": str(cache), "models": [e.as_dict() for e in entries]}))
        return 0
    print(f"model cache: {cache}")
    # The path (or problem) goes on its own indented line: as a last column it pushed every
    # row, the header too, past 80 columns, and the terminal wrapped them.
    rows = [("NAME", "FROM", "KIND", "PIXEL µm", "CH", "VERSION", "SHA256")]
    paths = ["PATH / PROBLEM"]
    for e in entries:
        rows.append(
            (
                e.name,
                e.origin,
                e.kind,
                f"{e.pixel_size:g}" if e.pixel_size else "-",
                str(e.channels or "-"),
                e.version or "-",
                e.sha256[:12] or "-",
            )
        )
        paths.append(e.problem or e.path or "-")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r, path in zip(rows, paths, strict=True):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        print(f"    {path}")
    return 0


def _check_out_folder(out: Path) -> None:
    """`--out` must be, or be creatable as, a folder: found at the end of training, a file
    there (or above it) cost the whole run and ended in a FileExistsError."""
    for part in (*reversed(out.parents), out):
        if (part.exists() or part.is_symlink()) and not part.is_dir():
            # A symbolic link to nothing (or to itself) is no file: it was called one.
            kind = "a file" if part.exists() else "a broken symbolic link"
            what = f"is {kind}" if part == out else f"is under {part}, which is {kind}"
            raise ModelError(f"train: --out {out} {what}; give a folder")
    # A folder that cannot take the model (read-only, another user's) was found only when
    # the trained model was saved: minutes to an hour of training lost. Tried by making a
    # file there (permission bits do not tell root, or a read-only mount, the whole story).
    existing = next(p for p in (out, *out.parents) if p.is_dir())
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        where = "" if existing == out else f" (its folder {existing})"
        raise ModelError(
            f"train: --out {out}{where} cannot be written ({exc.strerror or exc}); give a "
            "folder you can write to"
        ) from None


def _train(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.batch < 1 or args.pool < 1 or args.threads < 1:
        raise ModelError("train: --steps, --batch, --pool and --threads must be >= 1")
    # Checked before the minutes of data generation: a bad share was silently clamped (2 ->
    # every look without nuclei), a bad --lr ended in torch's traceback, a missing --init
    # was found only after the data was made.
    for flag in ("negatives", "tumour", "dense", "specks", "dark_nests"):
        v = getattr(args, flag)
        if not 0.0 <= v <= 1.0:
            name = flag.replace("_", "-")
            raise ModelError(f"train: --{name} {v:g} is a share: give a value from 0 to 1")
    if not (math.isfinite(args.lr) and 0.0 < args.lr <= 1.0):
        raise ModelError(f"train: --lr {args.lr:g} must be above 0 and at most 1 (default 1e-3)")
    if args.tune_images < 0:
        raise ModelError("train: --tune-images must be 0 (no tuning) or more")
    if args.init is not None:
        init = args.init / "instanseg.pt" if args.init.is_dir() else args.init
        if not init.is_file():
            raise ModelError(f"train: --init {init} does not exist: give an exported instanseg.pt")
        # What is no TorchScript export (a slide, a truncated copy) was found only after the
        # minutes of data generation; the archive check reads it without torch.
        from wsitui.models.archive import check_archive

        try:
            check_archive(init)
        except ModelError as exc:
            raise ModelError(f"train: --init: {exc}") from None
    _check_out_folder(args.out)

    from wsitui.models.train import TrainConfig, train

    cfg = TrainConfig(
        out=args.out,
        steps=args.steps,
        seed=args.seed,
        batch=args.batch,
        patch=args.patch,
        pool=args.pool,
        threads=args.threads,
        tune_images=args.tune_images,
        normalization=args.normalization,
        negatives=args.negatives,
        tumour=args.tumour,
        dense=args.dense,
        specks=args.specks,
        dark_nests=args.dark_nests,
        init=args.init,
        lr=args.lr,
        warm_steps=min(200, max(1, args.steps // 2)),
    )
    path = train(cfg, log=lambda s: print(s, flush=True))
    if args.eval:
        from wsitui.models.evaluate import evaluate
        from wsitui.models.loaded import load
        from wsitui.models.source import ModelSource

        result = evaluate(load(ModelSource("file", path.parent.name, path), "cpu"))
        print(f"held-out F1 {result.score.f1:.3f} ({result.score})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from wsitui.models.loaded import load
    from wsitui.models.source import cache_dir, resolve
    from wsitui.slides.sample import parse_size
    from wsitui.slides.style import STYLES

    # Every argument is checked before the model loads: `--images 0` ran the whole-slide
    # eval (0 read as "not given"), and `--looks nosuch --images 5` went unchecked.
    if args.images is not None and not 1 <= args.images <= 1000:
        raise ModelError("eval: --images must be 1-1000")
    # a look named twice was scored twice and counted twice in the pooled row
    looks = list(dict.fromkeys(x.strip() for x in args.looks.split(",") if x.strip()))
    bad = [x for x in looks if x not in STYLES and x not in DENSE_LOOKS]
    if bad or not looks:
        raise ModelError(
            f"eval: look {bad[0] if bad else ''!r} is unknown; use {', '.join(STYLES)} or "
            f"dense0-{DENSE_LOOKS[-1]}"
        )
    if not 1 <= args.seeds <= 50:
        raise ModelError("eval: --seeds must be 1-50")
    try:
        size = parse_size(args.size)
    except ValueError as e:
        raise ModelError(f"eval: {e}") from None

    source = resolve(
        args.model, Path.cwd(), cache_dir(args.model_dir), base_is="the current folder"
    )
    model = load(source, args.device, cpu_threads=None)
    if args.images is not None:
        return _eval_crops(args, model)
    from wsitui.models.classical import ClassicalModel
    from wsitui.models.evaluate import LookScore, evaluate_slides, pooled, visible_recall

    seeds = range(args.seeds)
    models = [model] if args.no_baseline or model.is_classical else [model, ClassicalModel()]
    results: dict[str, list[LookScore]] = {}
    for m in models:
        results[m.name] = evaluate_slides(m, looks, seeds, size)
    if args.json:
        print(
            json.dumps(
                {
                    "size": list(size),
                    "seeds": args.seeds,
                    "models": {
                        name: {
                            "looks": [r.as_dict() for r in rs],
                            "f1": round(pooled(rs).f1, 4),
                            "faint": sum(r.faint for r in rs),
                            "visible_recall": round(visible_recall(rs), 4),
                        }
                        for name, rs in results.items()
                    },
                    "model": model.manifest(),
                }
            )
        )
        return 0
    print(
        f"held-out slides: {len(looks)} looks x {args.seeds} seed(s), {size[0]}x{size[1]} px, "
        "seeds and looks training never used"
    )
    if not model.is_classical:  # what a job's defaults run (classical_fill.py, nuclear_gate.py)
        fill = "off"
        if getattr(model, "classical_fill", False):
            from wsitui.models.classical_fill import VERSION as FILL_VERSION

            fill = f"on ({FILL_VERSION})"
        print(f"{model.name}: as a job runs it: nuclear check on, classical fill {fill}")
    print(
        f"{'look':<10} {'model':<18} {'F1':>6} {'prec':>6} {'recall':>6} {'touch':>6} "
        f"{'n':>6} {'faint':>6} {'vis R':>6}"
    )
    for i, look in enumerate(looks):
        for name, rs in results.items():
            r = rs[i]
            s = r.score
            print(
                f"{look:<10} {name[:18]:<18} {s.f1:6.3f} {s.precision:6.3f} {s.recall:6.3f} "
                f"{r.touching_recall:6.3f} {s.tp + s.fn:6d} {r.faint:6d} {r.visible_recall:6.3f}"
            )
    for name, rs in results.items():
        s = pooled(rs)
        faint = sum(r.faint for r in rs)
        print(
            f"{'all':<10} {name[:18]:<18} {s.f1:6.3f} {s.precision:6.3f} {s.recall:6.3f} "
            f"{'':6} {s.tp + s.fn:6d} {faint:6d} {visible_recall(rs):6.3f}"
        )
    print(
        "faint: true nuclei under 0.01 OD of haematoxylin over the tissue around them; "
        "vis R: recall on the rest"
    )
    return 0


def _eval_crops(args: argparse.Namespace, model: Any) -> int:
    from wsitui.models.data import heldout_set
    from wsitui.models.evaluate import evaluate

    if not 1 <= args.images <= 1000:
        raise ModelError("eval: --images must be 1-1000")
    result = evaluate(model, heldout_set(args.images))
    s = result.score
    if args.json:
        out = {"model": model.manifest(), "f1": s.f1, "tp": s.tp, "fp": s.fp, "fn": s.fn}
        print(json.dumps({**out, "images": args.images, "seconds": result.seconds}))
    else:
        print(
            f"{model.name}: F1 {s.f1:.3f} (precision {s.precision:.3f}, recall {s.recall:.3f}; "
            f"{s.tp} matched, {s.fp} false, {s.fn} missed) on {args.images} held-out images"
        )
    return 0
