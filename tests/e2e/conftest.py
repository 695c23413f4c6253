"""End-to-end fixtures: a real service process shared by a module's tests.

Servers start without the warm-up and with direct convolutions (``server_env``): the warm-up only
measures this machine and picks kernels, which the in-process tests check, and about 30 starts
would each pay for it. The shared ``server`` starts as users run it, warm-up and all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from PIL import Image

from helpers import noise_image
from nginxproc import run_nginx
from pages import CHROMIUM, CHROMIUM_ARGS, DESKTOP, HANG_MS
from serverproc import REPO, Server, run_server


@pytest.fixture(scope="module")
def server_env(decoder_path, tmp_path_factory) -> dict[str, str]:
    presets = tmp_path_factory.mktemp("presets")
    noise_image(64, 48, seed=40).save(presets / "ocean.png")
    return {"ADAIN_DECODER": str(decoder_path), "ADAIN_PRECISION": "fp32", "ADAIN_PRESETS_DIR": str(presets),
            "ADAIN_DEFAULT_CONTENT_SIZE": "0", "ADAIN_DEFAULT_STYLE_SIZE": "64",
            "ADAIN_FRONTEND_DIR": str(tmp_path_factory.mktemp("nofrontend") / "none"),
            "ADAIN_WARMUP": "0", "ADAIN_CONVOLUTION": "direct"}


@pytest.fixture(scope="module")
def server(server_env, tmp_path_factory) -> Iterator[Server]:
    env = {**server_env, "ADAIN_WARMUP": "1", "ADAIN_CONVOLUTION": "auto"}
    with run_server(tmp_path_factory.mktemp("server"), **env) as s:
        yield s


# ---- the web page's tests (tests/e2e/pages.py has their helpers) ----

@pytest.fixture(scope="module")
def site(server_env, tmp_path_factory):
    """(nginx url, service url): the service also serves the page itself at /. Two presets."""
    presets = Path(server_env["ADAIN_PRESETS_DIR"])
    noise_image(64, 48, seed=41).save(presets / "meadow.png")
    env = {**server_env, "ADAIN_FRONTEND_DIR": str(REPO / "frontend" / "public"), "ADAIN_DEFAULT_STYLE_SIZE": "64"}
    with run_server(tmp_path_factory.mktemp("web-server"), **env) as server:
        with run_nginx(tmp_path_factory.mktemp("nginx"), server.url.removeprefix("http://")) as proxy:
            yield proxy, server.url


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def open_page(browser):
    """open_page(url, viewport) -> a page whose every request is recorded in page.urls."""
    pages = []

    def open_(url: str, viewport: dict = DESKTOP):
        page = browser.new_page(viewport=viewport)
        page.set_default_timeout(HANG_MS)  # every wait is for an event; only a hang reaches this
        page.urls = []
        page.on("request", lambda r: page.urls.append(r.url))
        page.goto(url)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        assert all(urlparse(u).hostname in ("127.0.0.1", "localhost") or u.startswith(("blob:", "data:"))
                   for u in page.urls), [u for u in page.urls if "127.0.0.1" not in u]
        page.close()


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    paths = {k: tmp_path / n for k, n in (("content", "photo.jpg"), ("other", "beach.jpg"), ("style", "painting.png"),
                                          ("junk", "notes.png"), ("mask", "mask.png"), ("tall", "tall-mask.png"))}
    noise_image(96, 64, seed=1).save(paths["content"])
    noise_image(96, 64, seed=3).save(paths["other"])
    noise_image(64, 64, seed=2).save(paths["style"])
    paths["junk"].write_text("this is not an image")
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (0, 0, 48, 64))
    mask.save(paths["mask"])
    Image.new("L", (40, 90), 255).save(paths["tall"])
    return paths


@pytest.fixture
def camera_page(site, playwright, tmp_path):
    """camera_page(viewport) -> a page of a Chromium whose camera plays a generated pan (.y4m), on
    the Live tab with the first preset chosen at 192 px, not started."""
    import clips

    proxy, _ = site
    y4m = clips.write_y4m(tmp_path / "camera.y4m", clips.pan(320, 240, 30))
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}"])

    def open_(viewport: dict = DESKTOP):
        page = browser.new_page(viewport=viewport)
        page.set_default_timeout(HANG_MS)
        page.context.grant_permissions(["camera"], origin=proxy)
        page.goto(proxy + "/")
        page.wait_for_selector("#gallery button")
        page.click("#tab-live")
        page.click("#gallery button >> nth=0")
        page.select_option("#live-size", "192")
        return page

    yield open_
    browser.close()
