"""The web page in a real headless Chromium, through a real nginx, in front of a real service."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from helpers import noise_image
from model.adain import COLOR_MATCH
from nginxproc import NGINX, run_nginx
from serverproc import REPO, run_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
missing = [p for p in (NGINX, CHROMIUM) if not Path(p).exists()]
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover
    missing.append("playwright")
if missing and os.environ.get("ADAIN_REQUIRE_BROWSER"):
    raise RuntimeError(f"browser tests required but missing: {missing}")
pytestmark = pytest.mark.skipif(bool(missing), reason=f"needs {missing} (installed by .ci/run)")


@pytest.fixture(scope="module")
def site(server_env, tmp_path_factory):
    """(nginx url, service url): the service also serves the page itself at /."""
    env = {**server_env, "ADAIN_FRONTEND_DIR": str(REPO / "frontend" / "public")}
    with run_server(tmp_path_factory.mktemp("web-server"), **env) as server:
        with run_nginx(tmp_path_factory.mktemp("nginx"), server.url.removeprefix("http://")) as proxy:
            yield proxy, server.url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    paths = {"content": tmp_path / "photo.jpg", "style": tmp_path / "painting.png", "junk": tmp_path / "notes.png"}
    noise_image(96, 64, seed=1).save(paths["content"])
    noise_image(64, 64, seed=2).save(paths["style"])
    paths["junk"].write_text("this is not an image")
    return paths


def test_both_origins_serve_the_page_and_nginx_adds_headers(site):
    proxy, direct = site
    for url in (proxy, direct):
        r = httpx.get(url + "/")
        assert r.status_code == 200 and 'id="stylize"' in r.text
    r = httpx.get(proxy + "/app.js", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip"
    assert r.headers["x-content-type-options"] == "nosniff" and "frame-ancestors" in r.headers["content-security-policy"]
    assert httpx.get(proxy + "/readyz").json()["ready"] is True
    assert httpx.get(proxy + "/metrics").status_code == 404  # kept inside the deployment


def show(capsys, shot: Path) -> None:
    with capsys.disabled():  # always in the test output, also under -q
        print(f"\nscreenshot: {shot}")


def test_stylize_through_the_page(site, browser, images, tmp_path, capsys):
    proxy, _ = site
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(proxy + "/")
    page.wait_for_selector("#gallery button")  # the preset from GET /styles, with its thumbnail
    page.set_input_files("#content-file", str(images["content"]))
    page.set_input_files("#style-files", str(images["style"]))
    page.click("#gallery button")  # a second style: a preset
    assert page.locator("#chosen input.weight").count() == 2  # a weight slider per style
    page.locator("#chosen input.weight").first.fill("0.3")
    page.locator("#alpha").fill("0.6")
    assert page.locator("#alpha-value").inner_text() == "0.60"
    # the page's slider starts at the service's default, a copy kept in index.html
    assert float(page.locator("#color-match").input_value()) == COLOR_MATCH
    assert float(page.locator("#color-match-value").inner_text()) == COLOR_MATCH
    page.locator("#color-match").fill("0.2")
    assert page.locator("#color-match-value").inner_text() == "0.20"
    page.select_option("#size", "256")
    sent = page.evaluate("['alpha', 'color_match'].map((k) => buildForm().get(k))")  # what the click sends
    assert sent == ["0.6", "0.2"]
    page.click("#stylize")
    # locator waits, not wait_for_function: the page's CSP (rightly) forbids eval
    page.wait_for_selector("#download:not([hidden])", timeout=60_000)
    page.wait_for_selector("#result[data-width]")
    size = page.evaluate("[document.getElementById('result').naturalWidth, document.getElementById('result').naturalHeight]")
    assert size == [384, 256]  # 96x64 content at shorter side 256
    assert page.locator("#download").is_visible()
    assert "384×256" in page.inner_text("#result-caption")
    shot = tmp_path / "web-result.png"
    page.screenshot(path=str(shot), full_page=True)
    show(capsys, shot)
    page.close()


def test_api_docs_render_offline_through_nginx(site, browser):
    proxy, _ = site
    page = browser.new_page()
    page.goto(proxy + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "adain-service" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector("text=/stylize")
    page.close()


def test_a_non_image_shows_a_readable_error_on_a_phone(site, browser, images, tmp_path, capsys):
    proxy, _ = site
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(proxy + "/")
    page.set_input_files("#content-file", str(images["junk"]))
    page.set_input_files("#style-files", str(images["style"]))
    page.click("#stylize")
    page.wait_for_selector("#status.error", timeout=30_000)
    text = page.inner_text("#status")
    assert "Not an image" in text and "content" in text
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    shot = tmp_path / "web-error-phone.png"
    page.screenshot(path=str(shot), full_page=True)
    show(capsys, shot)
    page.close()
