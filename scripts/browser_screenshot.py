"""Screenshot `wsitui serve` in headless Chromium: the real app, served, in a real browser.

.venv/bin/python scripts/browser_screenshot.py [OUT.png]   (default: screenshots/browser.png)

Needs the system's `chromium` (apt-get install chromium). It generates a small sample slide and
a two-tenant config in a temporary dir, serves them on a free loopback port, opens the page,
waits for the tenant bar, starts alice's workflow (S) and captures the page.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the CDP helpers live beside the tests that use them

from tests.serve.cdp import browser, chromium_path, open_served  # noqa: E402
from tests.serve.terminal import start_serve  # noqa: E402
from wsitui.slides.sample import write_sample_slide  # noqa: E402

CONFIG = """
[scheduler]
max_workers = 2
max_active_users = 2

[[workflows]]
tenant = "alice"
name = "lung-biopsy"
  [[workflows.jobs]]
  id = "mask"
  type = "TISSUE_MASK"
  slide = "demo.svs"
  branch = "A"
  [[workflows.jobs]]
  id = "mask-256"
  type = "TISSUE_MASK"
  slide = "demo.svs"
  branch = "A"
  depends_on = ["mask"]
  params = {{ tile_size = 256 }}
  [[workflows.jobs]]
  id = "mask-1024"
  type = "TISSUE_MASK"
  slide = "demo.svs"
  branch = "B"
  params = {{ tile_size = 1024 }}

[[workflows]]
tenant = "bob"
name = "colon"
  [[workflows.jobs]]
  id = "mask"
  type = "TISSUE_MASK"
  slide = "demo.svs"
  branch = "main"
"""


async def shoot(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_sample_slide(root / "demo.svs", size=(4096, 3072), seed=1)
        (root / "wsitui.toml").write_text(CONFIG.format())
        server = start_serve(
            "--config", root / "wsitui.toml", "--data-dir", root / "data", "--tenant", "alice"
        )
        try:
            async with browser(1280, 760) as page:
                await open_served(page, server.page_url)
                await page.wait_for_text("tenant alice")
                await page.wait_for_text("lung-biopsy")
                await page.press("S")  # start all of alice's workflow
                await page.wait_for_text("SUCCEEDED", "succeeded", timeout=120)
                await asyncio.sleep(2.0)  # let the last frame paint
                out.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(out)
        finally:
            server.stop()
    print(out)


def main() -> int:
    if chromium_path() is None:
        print("browser_screenshot: chromium is not installed (apt-get install chromium)")
        return 2
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "screenshots" / "browser.png"
    asyncio.run(shoot(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
