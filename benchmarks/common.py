"""What the benchmarks share: the repo root on sys.path, the slide cache, peak RSS."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sample(size: tuple[int, int], seed: int) -> Path:
    """A generated sample slide, made once into benchmarks/.cache."""
    from wsitui.slides.sample import write_sample_slide

    path = CACHE / f"cells_{size[0]}x{size[1]}_s{seed}.svs"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"generating {path.name} (once) ...", file=sys.stderr)
        write_sample_slide(path, size=size, seed=seed)
    return path
