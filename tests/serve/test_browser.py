"""`wsitui serve` in a real headless Chromium (the system's package): the page loads, the app
draws its tenant bar, and a key pressed in the browser reaches the app."""

from __future__ import annotations

import os

import anyio
import pytest

from tests.serve.cdp import browser, chromium_path, open_served

# Skipped only on a developer's machine without chromium: in CI (CI=true, where `.ci/run`
# installs Debian's chromium) a missing browser fails the test, so the face is always checked.
IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(
        chromium_path() is None and not IN_CI,
        reason="no chromium installed (apt-get install chromium)",
    ),
]


def test_chromium_is_there_in_ci():
    if IN_CI:
        assert chromium_path() is not None, (
            "CI=true but chromium is missing: .ci/run installs it with apt-get (did it fail?)"
        )


async def test_page_loads_draws_the_tenant_bar_and_takes_a_key(served):
    with anyio.fail_after(90):
        async with browser() as page:
            await open_served(page, served.page_url)
            await page.wait_for_text("tenant alice")  # the top bar, drawn in the browser
            assert "wsitui keys" not in page.text
            await page.press("?")
            # The key went from the page to the app, and the app answered with its help.
            await page.wait_for_text("wsitui keys")
            assert any('"stdin"' in frame and "?" in frame for frame in page.sent)
