"""Model layer speed and F1 (run on demand, never in CI).

    .venv/bin/python benchmarks/bench_models.py [--images 20] [--repeat 5]

Per-tile time of `LoadedModel.predict` for the shipped model at 256² and 512², against two
baselines measured in the same run: instanseg's own `InstanSeg.eval_small_image` on the same
TorchScript module and tiles, and the classical fallback. Then held-out detection F1 of the
shipped model and of the classical fallback on the same generated images.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from wsitui.models.classical import ClassicalModel
from wsitui.models.data import heldout_set
from wsitui.models.evaluate import evaluate
from wsitui.models.loaded import TorchModel, load
from wsitui.models.source import resolve


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    shipped = load(resolve("shipped"), "cpu")
    assert isinstance(shipped, TorchModel)
    classical = ClassicalModel()
    from instanseg import InstanSeg

    lib = InstanSeg(shipped._module, device="cpu", verbosity=0)
    print(f"torch threads: {shipped.threads}")
    for side in (256, 512):
        rgb, _ = heldout_set(1, side)[0]
        batch = rgb[None]
        ours = median_ms(lambda b=batch: shipped.predict(b), args.repeat)
        theirs = median_ms(
            lambda r=rgb: lib.eval_small_image(
                r, pixel_size=0.5, return_image_tensor=False, target="nuclei"
            ),
            args.repeat,
        )
        cls = median_ms(lambda b=batch: classical.predict(b), args.repeat)
        print(
            f"{side}² tile: predict {ours:.0f} ms | instanseg eval_small_image {theirs:.0f} ms "
            f"({theirs / ours:.2f}x) | classical {cls:.0f} ms ({cls / ours:.2f}x)"
        )
    images = heldout_set(args.images, 256)
    for model in (shipped, classical):
        r = evaluate(model, images)
        s = r.score
        print(
            f"{model.name}: held-out F1 {s.f1:.3f} (P {s.precision:.3f} R {s.recall:.3f}, "
            f"{s.tp} tp / {s.fp} fp / {s.fn} fn) on {args.images} images, {r.seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
