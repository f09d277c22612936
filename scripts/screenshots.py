"""Make SVG screenshots of the main screens from the real app (real executors, real slides).

.venv/bin/python scripts/screenshots.py [OUT_DIR]   (default: screenshots/)
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from textual.widgets import Select

from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, WorkflowSpec
from wsitui.jobs.registry import default_executors
from wsitui.slides.sample import write_sample_slide
from wsitui.tui.app import WsituiApp


def demo(slide: Path, name: str) -> WorkflowSpec:
    s = str(slide)
    return WorkflowSpec(
        name=name,
        jobs=(
            JobSpec(id="mask", type="TISSUE_MASK", slide=s, branch="A"),
            JobSpec(id="mask-256", type="TISSUE_MASK", slide=s, branch="A",
                    depends_on=("mask",), params={"tile_size": 256}),
            JobSpec(id="mask-1024", type="TISSUE_MASK", slide=s, branch="B",
                    params={"tile_size": 1024}),
            JobSpec(id="mask-fine", type="TISSUE_MASK", slide=s, branch="C",
                    params={"tile_size": 128}),
        ),
    )  # fmt: skip


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        slide = Path(tmp) / "demo.svs"
        write_sample_slide(slide, size=(8192, 6144), seed=1)
        engine = Engine(Path(tmp) / "data", default_executors(), max_active_users=1)
        app = WsituiApp(engine, tenant="alice", image_protocol="halfcell")
        async with app.run_test(size=(120, 36)) as pilot:
            await app.ready.wait()
            # Jobs take about a second each: let one workflow finish, and show it next to a
            # held one (a mid-run screen here would be a race, not a picture of one moment).
            engine.submit("alice", demo(slide, "cohort-7"))
            await engine.wait_idle()
            engine.submit("alice", demo(slide, "cohort-8"), start=False)
            await app.flush()
            await pilot.pause()
            await pilot.press("up")  # the workflow list: select the finished cohort-7
            await app.flush()
            await pilot.pause()
            app.save_screenshot("main.svg", str(out))
            await pilot.press("tab", "enter")
            await pilot.pause(0.5)
            app.save_screenshot("job_detail.svg", str(out))
            await pilot.press("escape", "m")
            await pilot.pause(0.5)
            app.save_screenshot("metrics.svg", str(out))
            await pilot.press("escape", "question_mark")
            await pilot.pause()
            app.save_screenshot("help.svg", str(out))
            await pilot.press("escape", "a")  # the add-job dialog for a SEGMENT_CELLS job
            await pilot.pause()
            app.screen.query_one("#type", Select).value = "SEGMENT_CELLS"
            await pilot.pause(0.3)
            app.save_screenshot("add_job.svg", str(out))
            await pilot.press("escape")
            await pilot.resize_terminal(80, 24)  # the smallest supported terminal
            await app.flush()
            await pilot.pause(0.5)
            app.save_screenshot("main_80x24.svg", str(out))
            await app.shutdown()
    print(f"wrote {', '.join(sorted(p.name for p in out.glob('*.svg')))} to {out}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("screenshots")))
