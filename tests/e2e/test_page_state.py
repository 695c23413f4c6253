"""The page keeps one truth (real Chromium, real nginx, a real service): a running video can be
stopped and is gone on the server, a tab switch or a reload keeps it, a second click starts
nothing; progress stays in the window while a video, a live stream or an update runs, on a
desktop and a phone; registered styles show their pictures; photos the browser cannot draw
show the server's preview; a format the server refuses is refused before upload; history keeps
results worth keeping and restores everything they were made with."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from PIL import Image

import clips
from helpers import noise_image, phone_photo
from pages import DESKTOP, PHONE, first_result, needs_browser, result_size, serious, show, wait_result
from nginxproc import run_nginx
from serverproc import REPO, run_server
from waiting import wait_for

pytestmark = needs_browser

def in_view(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    vp = page.viewport_size
    return (box is not None and box["y"] >= 0 and box["y"] + box["height"] <= vp["height"]
            and box["x"] >= 0 and box["x"] + box["width"] <= vp["width"])


def progress_in_view_everywhere(page, what: str) -> None:
    """The running job's line and its Stop are inside the window at the page's top, at the
    options and at its end."""
    for where in ("window.scrollTo(0, 0)", "document.getElementById('alpha').scrollIntoView()",
                  "window.scrollTo(0, document.body.scrollHeight)"):
        page.evaluate(where)
        assert in_view(page, "#job-text") and in_view(page, "#job-stop"), (what, where, page.viewport_size)


def posts(page) -> list[str]:
    sent: list[str] = []
    page.on("request", lambda r: r.method == "POST" and sent.append(r.url.rsplit("/", 1)[-1]))
    return sent


def test_a_running_video_is_followed_across_tabs_and_reloads_and_stopped_on_the_server(site, open_page, tmp_path,
                                                                                        capsys):
    proxy, _ = site
    # long enough to be stopped on a fast machine too: 240 frames of 480×360 (it is stopped within seconds)
    clip = clips.write(tmp_path / "long.mp4", clips.pan(480, 360, 240), fps=24)
    for viewport in (DESKTOP, PHONE):
        page = open_page(proxy + "/", viewport)
        sent, asked = posts(page), []
        page.on("dialog", lambda d: (asked.append(d.message), d.dismiss()))
        page.wait_for_selector("#gallery button")
        page.click("#tab-video")
        page.set_input_files("#video-file", str(clip))
        page.wait_for_selector("#video-info:has-text('long.mp4')")
        page.click("#gallery button >> nth=0")
        page.click("#stylize")
        page.wait_for_selector("#job-text:has-text('frames')")  # uploaded, the frames counting
        job = json.loads(page.evaluate("sessionStorage.getItem('adain-video-job')"))["url"]
        assert httpx.get(f"{proxy}/{job}").json()["state"] in ("queued", "running")
        assert page.locator("#stylize").is_disabled()  # no second job from a second click
        progress_in_view_everywhere(page, "video")
        page.evaluate("window.scrollTo(0, 0)")
        show(capsys, page, tmp_path, "video-running", docs=True)
        page.click("#tab-photo")  # another tab: the job stays, with its Stop
        assert page.locator("#job-row").is_visible() and "Video" in page.inner_text("#job-text")
        page.set_input_files("#content-file", _photo(tmp_path))
        page.wait_for_selector("#content-frame:not([hidden])")
        page.click("#stylize")  # a photo while the video runs: asked first (and refused here)
        wait_for(lambda: asked, "the page to ask before stopping the video")
        assert "video is still running" in asked[0] and "stylize" not in sent
        page.click("#tab-video")
        assert page.locator("#video-panel").is_visible() and page.locator("#job-progress").is_visible()
        page.reload()  # a reload follows the same job
        page.wait_for_selector("#job-text:has-text('frames')")
        page.click("#job-stop")
        page.wait_for_selector("#job-row", state="hidden")
        assert "stopped" in page.inner_text("#status")
        wait_for(lambda: httpx.get(f"{proxy}/{job}").status_code == 404, "the job to be gone on the server")
        assert sent.count("videos") == 1, sent
        assert serious(page) == [], f"video stopped, {viewport}"


def _photo(tmp_path: Path) -> str:
    path = tmp_path / "photo.png"
    noise_image(96, 64, seed=1).save(path)
    return str(path)


def test_an_update_shows_its_progress_in_the_window_on_desktop_and_phone(site, open_page, images):
    proxy, _ = site
    for viewport in (DESKTOP, PHONE):
        page = first_result(open_page(proxy + "/", viewport), images)
        held = []  # the update's request waits here: in flight while it is looked at, however fast the machine
        page.route("**/stylize", lambda route: held.append(route))
        page.select_option("#size", "1024")  # an automatic update
        page.wait_for_selector("#job-row:not([hidden])")
        progress_in_view_everywhere(page, "update")
        assert page.locator("#result-busy").is_visible()  # and beside the result
        assert held, "the update was sent"
        page.click("#job-stop")
        page.wait_for_selector("#status:has-text('Stopped')")
        page.unroute_all(behavior="ignoreErrors")


def test_live_progress_is_in_view_and_stop_clears_the_picture(camera_page, tmp_path, capsys):
    for viewport in (DESKTOP, PHONE):
        page = camera_page(viewport)
        page.click("#live-start")
        page.wait_for_selector("#live-out[src^='blob:']")
        progress_in_view_everywhere(page, "live")
        page.evaluate("window.scrollTo(0, 0)")
        show(capsys, page, tmp_path, "live-running", docs=True)
        page.click("#tab-photo")  # the stream goes on; its Stop stays in view
        assert in_view(page, "#job-stop") and "Live" in page.inner_text("#job-text")
        page.click("#job-stop")
        page.wait_for_selector("#job-row", state="hidden")
        page.click("#tab-live")
        assert page.locator("#live-out").is_hidden() and page.inner_text("#live-stats") == ""
        assert page.evaluate("document.getElementById('camera').srcObject") is None


def test_styles_show_their_pictures_and_the_list_says_what_it_did(site, open_page, images, tmp_path):
    proxy, _ = site
    page = open_page(proxy + "/")
    page.wait_for_selector("#gallery button")
    page.set_input_files("#style-files", str(images["style"]))
    page.set_input_files("#style-files", str(images["style"]))  # the same file again: nothing new
    page.wait_for_selector("#my-styles button[data-id] img[src^='blob:']")
    assert page.locator("#chosen li").count() == 1
    page.click("#my-styles button[data-id]")  # its tile: chosen already, so it is taken out, not added twice
    assert page.locator("#chosen li").count() == 0
    page.reload()  # a new tab's view: the server's picture of the registered style
    page.wait_for_selector("#my-styles button[data-id] img[src^='blob:']")
    size = page.evaluate("(() => { const i = document.querySelector('#my-styles img'); return [i.naturalWidth,"
                         " i.naturalHeight]; })()")
    assert size == [64, 64]  # the 64 px style, not the generic icon
    bad = [tmp_path / f"bad{i}.png" for i in range(3)]
    for path in bad:
        path.write_text("not an image")
    page.set_input_files("#style-files", [str(p) for p in bad])
    page.wait_for_selector("#styles-info.error")
    said = page.inner_text("#styles-info")
    assert all(p.name in said for p in bad)
    many = []
    for i in range(9):
        many.append(tmp_path / f"s{i}.png")
        noise_image(32, 32, seed=60 + i).save(many[-1])
    page.set_input_files("#style-files", [str(p) for p in many])
    page.wait_for_selector("#styles-info:has-text('not added')")
    assert "s8.png was not added" in page.inner_text("#styles-info") and "bad0" not in page.inner_text("#styles-info")
    assert page.locator("#chosen li").count() == 8


def test_photos_the_browser_cannot_draw_show_the_servers_preview_and_refused_formats_stop_early(
        site, open_page, images, tmp_path):
    proxy, _ = site
    page = open_page(proxy + "/")
    page.wait_for_selector("#gallery button")
    jxl = tmp_path / "scan.jxl"
    jxl.write_bytes(b"\xff\x0a" + bytes(200))
    page.set_input_files("#content-file", str(jxl))
    page.wait_for_selector("#content-info.error")
    assert "Not a format this server reads" in page.inner_text("#content-info") and "scan.jxl" in page.inner_text(
        "#content-info")
    assert not [u for u in page.urls if u.endswith(("/preview", "/stylize"))]  # refused before any upload
    heic = tmp_path / "IMG_0042.HEIC"
    heic.write_bytes(phone_photo(96, 64))
    page.set_input_files("#content-file", str(heic))
    page.wait_for_selector("#content-info:has-text('64×96')")  # the photo's size, turned
    drawn = "(() => { const i = document.getElementById('content-preview'); return [i.naturalWidth, i.naturalHeight]; })()"
    assert page.evaluate(drawn) == [64, 96]
    tiff = tmp_path / "scan.tif"
    noise_image(80, 40, seed=7).save(tiff)
    page.set_input_files("#content-file", str(tiff))
    page.wait_for_selector("#content-info:has-text('80×40')")
    assert page.evaluate(drawn) == [80, 40]
    page.click("#gallery button >> nth=0")
    page.select_option("#size", "256")
    page.click("#stylize")
    wait_result(page)
    before = "(() => { const i = document.getElementById('result-before'); return i.naturalWidth; })()"
    wait_for(lambda: page.evaluate(before) > 0, "the before / after line to show the photo")


def test_history_keeps_results_worth_keeping_and_restores_their_photo(site, open_page, images, tmp_path, capsys):
    proxy, _ = site
    page = first_result(open_page(proxy + "/"), images)
    for i in range(12):  # a tweaking session: twelve updates in a row
        shown = page.get_attribute("#result", "src")
        page.locator("#alpha").fill(f"{0.3 + 0.05 * i:.2f}")
        page.wait_for_selector(f"#result:not([src='{shown}'])")
    wait_for(lambda: page.locator("#history li").count() == 2, "the last update to be kept after the pause")
    assert "α 0.85" in page.inner_text("#history li >> nth=0") and "photo.jpg" in page.inner_text("#history li >> nth=0")
    portrait = tmp_path / "portrait.png"
    noise_image(64, 96, seed=8).save(portrait)
    page.set_input_files("#content-file", str(portrait))
    page.wait_for_selector("#content-info:has-text('portrait.png')")
    page.click("#stylize")
    page.wait_for_selector("#result[data-width='256']")
    wait_for(lambda: page.locator("#history li").count() == 3, "the render to be kept")
    page.click("#history li >> nth=1 >> .show")  # the photo.jpg result: its photo comes back with it
    page.wait_for_selector("#content-info:has-text('photo.jpg')")
    assert page.input_value("#alpha") == "0.85"
    shown = page.get_attribute("#result", "src")
    page.locator("#alpha").fill("0.5")
    page.wait_for_selector(f"#result:not([src='{shown}'])")
    assert result_size(page) == [384, 256] and page.inner_text("#result-caption").startswith("photo.jpg")
    wait_for(lambda: page.locator("#history li").count() == 4, "the update to be kept")
    page.reload()  # the last state back: its photo too, so the next change renders it
    page.wait_for_selector("#content-info:has-text('photo.jpg')")
    wait_result(page)
    shown = page.get_attribute("#result", "src")
    page.locator("#alpha").fill("0.7")
    page.wait_for_selector(f"#result:not([src='{shown}'])")
    assert "Choose a photo" not in page.inner_text("#status") and result_size(page) == [384, 256]


def test_the_page_at_rest_with_a_result_and_with_a_history(site, open_page, tmp_path, capsys):
    """The states docs/page/ shows (make screenshots), each checked by axe on a desktop and a phone:
    a real photo and two of the bundled paintings, uploaded."""
    proxy, _ = site
    photo = tmp_path / "coffee.jpg"
    Image.fromarray(clips.photo("coffee", 384)).save(photo)
    paintings = [REPO / "weights" / "presets" / n for n in ("autumn-fall.jpg", "bridge-at-sunset.jpg")]
    for viewport in (DESKTOP, PHONE):
        page = open_page(proxy + "/", viewport)
        page.wait_for_selector("#gallery button")
        assert serious(page) == [], f"empty, {viewport}"
        show(capsys, page, tmp_path, "empty", docs=True)
        page.set_input_files("#content-file", str(photo))
        page.set_input_files("#style-files", str(paintings[0]))
        page.select_option("#size", "256")
        page.click("#stylize")
        wait_result(page)
        page.evaluate("window.scrollTo(0, 0)")
        assert serious(page) == [], f"result, {viewport}"
        show(capsys, page, tmp_path, "result", docs=True)
        page.set_input_files("#style-files", str(paintings[1]))  # two styles: a second result, explicitly
        page.click("#stylize")
        wait_for(lambda: page.locator("#history li").count() == 2, "the second result in the history")
        page.locator("#history").scroll_into_view_if_needed()
        assert serious(page) == [], f"history, {viewport}"
        show(capsys, page, tmp_path, "history", docs=True)


def test_a_long_render_is_asked_for_first(site, open_page, images, tmp_path):
    proxy, _ = site
    page = first_result(open_page(proxy + "/"), images)
    sent, asked = posts(page), []
    page.on("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    big = tmp_path / "big.jpg"
    Image.linear_gradient("L").resize((7000, 5000)).convert("RGB").save(big, quality=80)
    page.set_input_files("#content-file", str(big))
    page.wait_for_selector("#content-info:has-text('7000×5000')")
    page.select_option("#size", "0")  # original size: not started by itself
    page.wait_for_selector("#status:has-text('Stylize to update')")
    page.click("#stylize")
    wait_for(lambda: asked, "the page to ask before a long render")
    assert "should take about" in asked[0] and "stylize" not in sent


def test_a_second_decoder_version_can_be_chosen_and_is_named(server_env, open_page, images, tmp_path):
    """With two decoder versions in the store the page offers the choice; the update sends it and
    the result (and its history entry) names the version that drew it."""
    from model.decoder import random_decoder, save_decoder
    from service.decoders import ModelStore

    store = ModelStore(tmp_path / "models", Path(server_env["ADAIN_DECODER"]))
    store.import_decoder(save_decoder(random_decoder(seed=4), tmp_path / "w", "safetensors"), "trained")
    env = {**server_env, "ADAIN_FRONTEND_DIR": str(REPO / "frontend" / "public"), "ADAIN_MODELS_DIR": str(store.root)}
    with run_server(tmp_path / "server", **env) as server, \
            run_nginx(tmp_path / "nginx", server.url.removeprefix("http://")) as proxy:
        page = first_result(open_page(proxy + "/"), images)
        page.wait_for_selector("#decoder-row:not([hidden])")
        assert "decoder v7" in page.inner_text("#result-caption")
        choose_and_see_it_named(page, "decoder", "trained", "decoder trained")


def test_style_matching_is_chosen_sent_and_named(site, open_page, images):
    """Choosing EFDM renders the photo again with it (the update's form says so), and the result
    and its history entry name it."""
    proxy, _ = site
    page = first_result(open_page(proxy + "/"), images)
    assert page.input_value("#matching") == "adain" and "EFDM" not in page.inner_text("#result-caption")
    choose_and_see_it_named(page, "matching", "efdm", "EFDM")


def choose_and_see_it_named(page, field: str, value: str, caption: str) -> None:
    """Choosing ``value`` in the select #``field`` renders again with it in the form, and the result
    and its history entry say ``caption``."""
    shown = page.get_attribute("#result", "src")
    with page.expect_request(lambda r: r.url.endswith("/stylize")) as update:
        page.select_option(f"#{field}", value)
    page.wait_for_selector(f"#result:not([src='{shown}'])")
    assert f'name="{field}"\r\n\r\n{value}'.encode() in (update.value.post_data_buffer or b"")
    assert caption in page.inner_text("#result-caption")
    wait_for(lambda: caption in page.inner_text("#history li >> nth=0"), "the entry to name it")
    assert serious(page) == [], f"{field} choice"
