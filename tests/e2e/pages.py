"""The web page's test helpers: Debian's Chromium through Playwright (no browser download), axe-core
checks, screenshots, and the page's first result. The fixtures (the site, the browser, pages that
record their requests) are in conftest.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from nginxproc import NGINX
from waiting import HANG

HANG_MS = HANG * 1000  # Playwright counts in milliseconds

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
missing = [p for p in (NGINX, CHROMIUM) if not Path(p).exists()]
try:
    from axe_playwright_python.sync_playwright import Axe
    import playwright.sync_api  # noqa: F401
except ImportError:  # pragma: no cover
    missing.append("playwright / axe-playwright-python")
if missing and os.environ.get("ADAIN_REQUIRE_BROWSER"):
    raise RuntimeError(f"browser tests required but missing: {missing}")
needs_browser = pytest.mark.skipif(bool(missing), reason=f"needs {missing} (installed by .ci/run)")
DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def show(capsys, page, tmp_path: Path, name: str, docs: bool = False) -> None:
    """A full-page screenshot, named in the output; for ``docs`` with ADAIN_SCREENSHOTS_DIR (make
    screenshots) also the window's view there, as docs/page/ shows the page's states."""
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    with capsys.disabled():  # always in the test output, also under -q
        print(f"\nscreenshot: {shot}")
    if docs and os.environ.get("ADAIN_SCREENSHOTS_DIR"):
        device = "phone" if page.viewport_size["width"] < 600 else "desktop"
        page.screenshot(path=str(Path(os.environ["ADAIN_SCREENSHOTS_DIR"]) / f"{name}-{device}.png"))


def serious(page) -> list[str]:
    """axe-core's violations of impact serious or critical, as 'rule: where' lines."""
    results = Axe().run(page)
    return [f"{v['id']}: {[n['target'] for n in v['nodes']][:3]}" for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")]


def result_size(page) -> list[int]:
    return page.evaluate("[document.getElementById('result').naturalWidth, document.getElementById('result').naturalHeight]")


def wait_result(page, timeout: float = HANG_MS) -> None:
    # locator waits, not wait_for_function: the page's CSP (rightly) forbids eval
    page.wait_for_selector("#result-panel:not([hidden]) #result[data-width]", timeout=timeout)


def first_result(page, images):
    """The photo and a preset at 256 px, stylized: the result on screen and in the history."""
    page.wait_for_selector("#gallery button")
    page.set_input_files("#content-file", str(images["content"]))
    page.click("#gallery button >> nth=0")
    page.select_option("#size", "256")
    page.click("#stylize")
    wait_result(page)
    page.wait_for_selector("#history li >> nth=0")
    return page
