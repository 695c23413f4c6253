"""The web page in a real headless Chromium, through a real nginx, in front of a real service:
the whole flow with the mouse and with the keyboard alone, masks, stale results, the live
preview, accessibility (axe-core) at desktop and phone widths, and no request leaving the host."""

from __future__ import annotations

import httpx

from model.adain import COLOR_MATCH
from nginxproc import run_nginx
from pages import DESKTOP, PHONE, first_result, needs_browser, result_size, serious, show, wait_result
from serverproc import REPO, run_server
from waiting import wait_for

pytestmark = needs_browser


def test_both_origins_serve_the_page_and_nginx_adds_headers(site):
    proxy, direct = site
    for url in (proxy, direct):
        r = httpx.get(url + "/")
        assert r.status_code == 200 and 'id="stylize"' in r.text
        assert httpx.get(url + "/favicon.ico").status_code == 200
        assert httpx.get(url + "/limits").json()["max_styles"] == 8
    r = httpx.get(proxy + "/js/main.js", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip"
    assert r.headers["x-content-type-options"] == "nosniff" and "frame-ancestors" in r.headers["content-security-policy"]
    assert httpx.get(proxy + "/readyz").json()["ready"] is True
    assert httpx.get(proxy + "/metrics").status_code == 404  # kept inside the deployment


def test_stylize_with_the_mouse_then_the_live_preview(site, open_page, images, tmp_path, capsys):
    proxy, _ = site
    page = open_page(proxy + "/")
    page.wait_for_selector("#gallery button")  # the presets from GET /styles, with thumbnails and names
    assert page.locator("#gallery .caption").all_inner_texts() == ["meadow", "ocean"]
    assert serious(page) == [], "empty page"
    page.set_input_files("#content-file", str(images["content"]))
    page.set_input_files("#style-files", str(images["style"]))
    page.click("#gallery button >> nth=0")  # a second style: a preset
    assert page.locator("#chosen input.weight").count() == 2  # a weight slider per style, with its value
    page.locator("#chosen input.weight").first.fill("0.3")
    assert page.locator("#chosen output").first.inner_text() == "0.30"
    page.locator("#alpha").fill("0.6")
    assert page.locator("#alpha-value").inner_text() == "0.60"
    assert float(page.locator("#color-match").input_value()) == COLOR_MATCH  # the service's default
    assert page.locator("#preserve-color").is_enabled()  # an upload and a preset: both have images to recolour
    page.select_option("#size", "256")
    page.select_option("#format", "webp")
    assert serious(page) == [], "filled page"
    page.wait_for_selector("#my-styles button[data-id]")  # registered: sent by id
    page.click("#stylize")
    wait_result(page)
    assert result_size(page) == [384, 256]  # 96x64 content at shorter side 256
    assert page.locator("#download").get_attribute("download") == "photo-in-painting+meadow.webp"
    assert "384×256 · WEBP" in page.inner_text("#result-caption")
    assert serious(page) == [], "result page"
    # the uploaded style was registered when added, so the page sends its id, not the image
    fields = page.evaluate("Promise.all([import('./js/photo.js'), import('./js/store.js')]).then(([p, { state: s }]) =>"
                           " [...p.buildForm({ photo: s.photo, mask: s.mask, styles: s.styles, options: s.options })"
                           ".keys()])")
    assert fields.count("style_id") == 2 and "style" not in fields and "weights" in fields
    # before / after: the slider moves the cut
    page.locator("#compare-slider").fill("20")
    assert "--pos: 20%" in page.get_attribute("#compare", "style")
    # live preview: moving a slider re-renders without a click, sending the photo's content id
    # (the server keeps its features), not the photo again
    first = page.get_attribute("#result", "src")
    with page.expect_request(lambda r: r.url.endswith("/stylize")) as update:
        page.locator("#color-match").fill("0")
    page.wait_for_selector(f"#result:not([src='{first}'])")
    body = update.value.post_data_buffer or b""
    assert b'name="content_id"' in body and b'name="content";' not in body, body[:300]
    # the result stays in view while the controls scroll, down to the page's end (where, without
    # the sticky panel, it would have scrolled far out of view)
    scrolled = page.evaluate("window.scrollTo(0, document.body.scrollHeight), scrollY")
    box, height = page.locator("#result").bounding_box(), page.viewport_size["height"]
    assert scrolled > box["height"] and box["y"] >= 0 and box["y"] + box["height"] <= height, (scrolled, box)
    # the format changes only the download: encoded here, no new stylization
    asked = sum("/stylize" in u for u in page.urls)
    page.select_option("#format", "jpeg")
    page.wait_for_selector("#download[download$='.jpg']")
    assert sum("/stylize" in u for u in page.urls) == asked and "JPEG" in page.inner_text("#result-caption")
    # dragging on the picture moves the before / after line
    box = page.locator("#compare").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    page.mouse.up()
    assert 20 <= int(page.input_value("#compare-slider")) <= 30
    page.click("#full-size")
    assert page.locator("#full-dialog").is_visible()
    page.keyboard.press("Escape")
    show(capsys, page, tmp_path, "web-result")


def test_keyboard_only_from_photo_to_result(site, open_page, images):
    proxy, _ = site
    page = open_page(proxy + "/")
    page.wait_for_selector("#gallery button")
    # Playwright turns on its file-chooser interception lazily; a key pressed right after
    # expect_file_chooser() can beat it, so it is turned on here, before any key
    page.on("filechooser", lambda chooser: None)

    def tab_to(element_id: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == element_id:
                return
        raise AssertionError(f"Tab never reached #{element_id}")

    tab_to("content-pick")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(str(images["content"]))
    page.wait_for_selector("#content-frame:not([hidden])")
    tab_to("style-pick")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press(" ")
    chooser.value.set_files(str(images["style"]))
    page.wait_for_selector("#chosen li")
    tab_to("size")
    page.keyboard.press("Home")  # the first size: 256 px
    tab_to("stylize")
    page.keyboard.press("Enter")
    wait_result(page)
    assert result_size(page) == [384, 256]
    # and the result came into view
    assert page.evaluate("document.getElementById('result-panel').getBoundingClientRect().top") < DESKTOP["height"]


def test_a_mask_with_two_presets_works_and_a_wrong_shape_is_caught_first(site, open_page, images):
    proxy, _ = site
    page = open_page(proxy + "/")
    page.wait_for_selector("#gallery button")
    page.set_input_files("#content-file", str(images["content"]))
    page.click("#gallery button >> nth=0")
    page.click("#gallery button >> nth=1")
    page.set_input_files("#mask-file", str(images["tall"]))
    page.wait_for_selector("#mask-info.error")
    assert "shapes differ" in page.inner_text("#mask-info")
    page.click("#stylize")
    assert "shapes differ" in page.inner_text("#status")  # refused here, nothing sent
    assert not any(u.endswith("/stylize") for u in page.urls)
    page.set_input_files("#mask-file", str(images["mask"]))
    page.wait_for_selector("#mask-overlay:not([hidden])")  # the mask shown over the photo
    assert page.locator("#chosen input.weight").count() == 0  # no weights with a mask
    assert page.locator("#chosen .name").all_inner_texts() == ["White: meadow", "Black: ocean"]
    page.select_option("#size", "256")
    page.click("#stylize")
    wait_result(page)
    assert result_size(page) == [384, 256]
    page.wait_for_selector("#history li")
    page.reload()  # the masked result comes back with its mask, photo and styles
    page.wait_for_selector("#mask-clear:not([hidden])")
    assert "mask.png" in page.inner_text("#mask-pick") and page.locator("#chosen .name").all_inner_texts() == [
        "White: meadow", "Black: ocean"]


def test_errors_keep_the_last_result_marked_and_a_phone_sees_its_result(site, open_page, images, tmp_path, capsys):
    proxy, _ = site
    page = open_page(proxy + "/", PHONE)
    page.wait_for_selector("#gallery button")
    assert serious(page) == [], "empty page, phone"
    page.set_input_files("#content-file", str(images["content"]))
    page.click("#gallery button >> nth=0")
    page.select_option("#size", "256")
    assert serious(page) == [], "filled page, phone"
    page.click("#stylize")
    wait_result(page)
    # on a phone the result sits above the controls and stays there while they scroll
    for where in ("#alpha", "#stylize"):
        page.locator(where).scroll_into_view_if_needed()
        top, bottom, scrolled = page.evaluate("[document.getElementById('result').getBoundingClientRect().top, "
                                              "document.getElementById('result').getBoundingClientRect().bottom, "
                                              "scrollY]")
        assert scrolled > PHONE["height"] and 0 <= top and bottom <= PHONE["height"], (where, top, bottom)
    assert serious(page) == [], "result page, phone"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    show(capsys, page, tmp_path, "web-result-phone")
    # a new photo: the old result stays, marked as not showing it, until the next render
    page.set_input_files("#content-file", str(images["other"]))
    page.wait_for_selector("#outdated-note:not([hidden])")
    page.click("#stylize")
    wait_result(page)
    page.wait_for_selector("#outdated-note", state="hidden")
    # the server refuses (both weights zero cannot be sent; a weightless preset pair is caught here)
    page.click("#gallery button >> nth=1")
    for i in range(2):
        page.locator("#chosen input.weight").nth(i).fill("0")
    assert "weight above 0" in page.inner_text("#styles-info")
    page.click("#stylize")
    assert "weight above 0" in page.inner_text("#status")
    # a file that is not an image is refused before upload; the last result stays, marked
    page.set_input_files("#content-file", str(images["junk"]))
    page.wait_for_selector("#status.error")
    text = page.inner_text("#status")
    assert "Not an image" in text and "notes.png" in text and "ADAIN_" not in text
    assert page.locator("#outdated-note").is_visible() and page.locator("#result").is_visible()
    assert serious(page) == [], "an error with the last result, phone"
    show(capsys, page, tmp_path, "web-error-phone")


def test_server_errors_read_as_sentences_and_keep_the_last_result_marked(site, open_page, images):
    """A refusal only the server can make (the page's registered style deleted meanwhile by someone
    else) is shown as a sentence; the last good result stays, marked as from before."""
    proxy, _ = site
    page = open_page(proxy + "/")
    page.wait_for_selector("#gallery button")
    page.set_input_files("#content-file", str(images["content"]))
    page.set_input_files("#style-files", str(images["junk"]))  # refused before it is added
    page.wait_for_selector("#styles-info.error")
    assert "Not an image" in page.inner_text("#styles-info") and page.locator("#chosen li").count() == 0
    page.set_input_files("#style-files", str(images["style"]))
    page.select_option("#size", "256")
    page.click("#stylize")
    wait_result(page)
    page.wait_for_selector("#my-styles button[data-id]")
    style_id = page.get_attribute("#my-styles button[data-id]", "data-id")
    assert style_id and httpx.delete(f"{proxy}/styles/{style_id}").status_code == 204
    page.click("#stylize")
    page.wait_for_selector("#status.error")
    assert "not registered" in page.inner_text("#status") and "from before" in page.inner_text("#status")
    assert page.locator("#outdated-note").is_visible()
    # and the server's numbers and setting names are put for people
    said = page.evaluate("import('./js/text.js').then((m) => m.friendly('content: image is 9000x9000 = 81000000 "
                         "pixels; the limit is 40000000 (ADAIN_MAX_IMAGE_PIXELS)'))")
    assert said == "content: image is 9000x9000 = 81,000,000 pixels; the limit is 40,000,000"


def test_docs_pages_render_and_ask_nothing_of_other_hosts(site, open_page):
    proxy, _ = site
    page = open_page(proxy + "/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "adain-service" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector("text=/stylize")
    page = open_page(proxy + "/redoc")
    page.wait_for_selector("h1:has-text('adain-service')")
    page.wait_for_load_state("networkidle")  # the side menu's maker logo too: from this host


def test_the_video_tab_uploads_follows_the_job_and_plays_the_result(site, open_page, tmp_path, capsys):
    """Through nginx: a clip (with sound) and a preset style; the bar follows the job; Chromium
    plays the MP4 from the server (Range requests through nginx), at the clip's size."""
    import clips

    proxy, _ = site
    clip = clips.write(tmp_path / "walk.mp4", clips.pan(96, 64, 16), fps=8, audio=True)
    page = open_page(proxy + "/")
    page.wait_for_selector("#gallery button")
    page.click("#tab-video")
    assert page.get_attribute("#tab-video", "aria-selected") == "true"
    assert page.locator("#photo-step").is_hidden() and page.locator("#mask-drop").is_hidden()
    page.set_input_files("#video-file", str(clip))
    page.wait_for_selector("#video-info:has-text('walk.mp4')")
    assert "96×64" in page.inner_text("#video-info")  # the browser read the clip's size and length
    page.click("#gallery button >> nth=0")
    assert page.inner_text("#stylize") == "Stylize video"
    assert serious(page) == [], "video tab"
    page.click("#stylize")
    page.wait_for_selector("#video-result:not([hidden])")
    assert "16 frames at 8 fps · with sound" in page.inner_text("#job-status")
    assert page.get_attribute("#video-download", "download") == "walk-in-meadow.mp4"
    video = "document.getElementById('video-result')"
    wait_for(lambda: page.evaluate(f"{video}.readyState") >= 2, "Chromium to load the MP4", every=0.1)
    assert page.evaluate("(() => { const v = document.getElementById('video-result');"
                         " return [v.videoWidth, v.videoHeight]; })()") == [96, 64]
    page.evaluate("document.getElementById('video-result').muted = true")
    page.evaluate("document.getElementById('video-result').play()")
    wait_for(lambda: page.evaluate(f"{video}.currentTime") > 0.2, "the video to play", every=0.1)
    assert serious(page) == [], "video result"
    show(capsys, page, tmp_path, "web-video")
    page.set_input_files("#video-file", str(clip))  # another clip: the last result goes with its caption
    page.wait_for_selector("#video-panel", state="hidden")


def test_the_video_tab_names_a_file_that_is_not_a_video(site, open_page, images):
    proxy, _ = site
    page = open_page(proxy + "/")
    page.wait_for_selector("#gallery button")
    page.keyboard.press("Tab")
    page.focus("#tab-photo")
    page.keyboard.press("ArrowRight")  # the tabs answer the arrow keys
    assert page.get_attribute("#tab-video", "aria-selected") == "true"
    page.set_input_files("#video-file", str(images["junk"]))
    page.click("#gallery button >> nth=0")
    page.click("#stylize")
    page.wait_for_selector("#status.error")
    assert "Not a video this server can read" in page.inner_text("#status")
    page.click("#tab-photo")
    assert page.inner_text("#stylize") == "Stylize" and page.locator("#photo-step").is_visible()


def test_the_live_tab_streams_a_camera_through_nginx(camera_page, tmp_path, capsys):
    """Chromium with a fake camera (a generated .y4m pan) through real nginx (WebSocket upgrade):
    the Live tab shows stylized frames beside the camera, with frames/s."""
    page = camera_page(DESKTOP)
    assert page.locator("#stylize").is_hidden() and page.locator("#mask-drop").is_hidden()
    page.click("#live-start")
    page.wait_for_selector("#live-out[src^='blob:']")
    first = page.get_attribute("#live-out", "src")
    page.wait_for_selector(f"#live-out:not([src='{first}'])")  # it keeps coming
    page.wait_for_selector("#live-stats:has-text('frames/s')")
    w, h = page.evaluate("[document.getElementById('live-out').naturalWidth,"
                         " document.getElementById('live-out').naturalHeight]")
    assert (w, h) == (256, 192)  # the camera's 4:3 at the chosen shorter side
    assert serious(page) == [], "live tab"
    show(capsys, page, tmp_path, "web-live")
    with capsys.disabled():
        print("\nlive:", page.inner_text("#live-stats"))
    page.click("#live-start")  # stop: the camera is released
    assert page.inner_text("#live-start") == "Start the camera"
    assert page.evaluate("document.getElementById('camera').srcObject") is None


def test_with_keys_the_page_takes_a_key_and_lists_and_deletes_my_styles(server_env, open_page, images, tmp_path):
    """A server with keys: the key goes in the page's field (sessionStorage, never a URL); the
    page's uploads are registered with a TTL and listed under "My styles" for that key only."""
    env = {**server_env, "ADAIN_FRONTEND_DIR": str(REPO / "frontend" / "public"), "ADAIN_DEFAULT_STYLE_SIZE": "64",
           "ADAIN_API_KEYS": "page-key-a,page-key-b"}
    with run_server(tmp_path / "server", **env) as server, \
            run_nginx(tmp_path / "nginx", server.url.removeprefix("http://")) as proxy:
        page = open_page(proxy + "/")
        page.wait_for_selector("#key-row:not([hidden])")
        page.fill("#api-key", "page-key-a")
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector("#gallery button")  # presets once the key is known
        thumb = page.get_attribute("#gallery img", "src")  # an <img> sends no key: preset thumbnails need none
        assert httpx.get(f"{proxy}/{thumb}").headers["content-type"] == "image/jpeg"
        assert page.locator("#my-styles-row").is_hidden()
        page.set_input_files("#content-file", str(images["content"]))
        page.set_input_files("#style-files", str(images["style"]))
        page.wait_for_selector("#my-styles button[data-id]")
        assert page.locator("#my-styles .caption").all_inner_texts() == ["painting.png"]
        assert serious(page) == [], "my styles"
        page.screenshot(path=str(tmp_path / "web-my-styles.png"))
        page.click("#stylize")
        wait_result(page)
        with server.client(headers={"X-API-Key": "page-key-a"}) as c:
            mine = [s for s in c.get("/styles").json()["styles"] if s["kind"] == "uploaded"]
        assert len(mine) == 1 and mine[0]["expires"] is not None  # page uploads are kept for a while only
        page.reload()  # the key stays for this tab
        page.wait_for_selector("#my-styles button[data-id]")
        assert page.input_value("#api-key") == "page-key-a"
        other = open_page(proxy + "/")
        other.evaluate("sessionStorage.setItem('adain-api-key', 'page-key-b')")
        other.reload()
        other.wait_for_selector("#gallery button")
        assert other.locator("#my-styles-row").is_hidden()  # B sees none of A's styles
        page.click("#my-styles .delete")
        page.wait_for_selector("#my-styles-row", state="hidden")
        with server.client(headers={"X-API-Key": "page-key-a"}) as c:
            assert [s for s in c.get("/styles").json()["styles"] if s["kind"] == "uploaded"] == []
        assert not [u for p in (page, other) for u in p.urls if "page-key" in u]


def test_docs_try_it_out_stylizes_without_edits(server_env, open_page, images, tmp_path):
    """/docs as a new user meets it: "Try it out" on POST /stylize, choose only the photo, Execute:
    the pre-filled example (a preset that exists, no weights) answers 200 with an image."""
    env = {**server_env, "ADAIN_PRESETS_DIR": str(REPO / "weights" / "presets"), "ADAIN_DEFAULT_CONTENT_SIZE": "64"}
    env.pop("ADAIN_FRONTEND_DIR")
    with run_server(tmp_path / "server", **env) as server:
        page = open_page(server.url + "/docs")
        page.click("#operations-stylize-stylize_stylize_post .opblock-summary")
        page.click("#operations-stylize-stylize_stylize_post .try-out__btn")
        page.locator("#operations-stylize-stylize_stylize_post tr[data-property-name='content'] input[type=file]"
                     ).set_input_files(str(images["content"]))
        page.click("#operations-stylize-stylize_stylize_post .execute")
        op = "#operations-stylize-stylize_stylize_post"
        status = page.locator(f"{op} .live-responses-table tbody .response-col_status")
        status.first.wait_for()
        assert status.first.inner_text().strip().startswith("200"), page.inner_text(
            "#operations-stylize-stylize_stylize_post .live-responses-table")




def test_history_shows_compares_and_survives_a_reload_and_paste_and_heic_work(site, open_page, images, tmp_path,
                                                                              capsys):
    """Results go into this browser's history (IndexedDB): shown again with their settings,
    compared with the before/after line, deleted, kept across a reload, cleared. A photo pasted
    from the clipboard and a HEIC phone photo (which Chromium itself cannot draw) stylize too."""
    from helpers import phone_photo

    proxy, _ = site
    page = first_result(open_page(proxy + "/"), images)
    page.locator("#alpha").fill("0.4")  # the live preview: a second result
    page.wait_for_selector("#history li >> nth=1")
    assert page.locator("#history li").count() == 2 and "α 0.40" in page.inner_text("#history li >> nth=0")
    assert serious(page) == [], "history"
    page.reload()  # kept across a reload, the newest back on screen
    page.wait_for_selector("#history li >> nth=1")
    wait_result(page)
    page.click("#history li >> nth=1 >> .show")  # the first result, with its settings
    page.wait_for_selector("#history li >> nth=1 >> .show[aria-pressed='true']")
    assert page.input_value("#alpha") == "1" and "from the history" in page.inner_text("#result-caption")
    page.click("#history li >> nth=0 >> text=Compare")
    assert "before: " in page.inner_text("#compare-label") and "α 0.40" in page.inner_text("#compare-label")
    show(capsys, page, tmp_path, "web-history")
    page.click("#history li >> nth=0 >> .delete")
    page.wait_for_selector("#history li >> nth=1", state="detached")
    page.click("#history-clear")
    page.wait_for_selector("#history-row", state="hidden")

    # paste: a photo on the clipboard becomes the photo
    data = list(images["other"].read_bytes())
    page.evaluate("""(bytes) => {
        const file = new File([new Uint8Array(bytes)], "pasted.jpg", { type: "image/jpeg" });
        const transfer = new DataTransfer();
        transfer.items.add(file);
        document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer }));
    }""", data)
    page.wait_for_selector("#content-info:has-text('pasted.jpg')")

    # a HEIC phone photo, turned by its EXIF: stylized upright
    heic = tmp_path / "IMG_0042.HEIC"
    heic.write_bytes(phone_photo(96, 64))
    page.set_input_files("#content-file", str(heic))
    page.wait_for_selector("#content-info:has-text('IMG_0042.HEIC')")
    page.click("#stylize")
    page.wait_for_selector("#result[data-width='256']")
    assert result_size(page) == [256, 384]  # upright: 64x96 shown, shorter side 256


def test_stop_returns_to_a_clean_state_and_keeps_the_last_result_on_a_phone(site, open_page, images):
    proxy, _ = site
    page = first_result(open_page(proxy + "/", PHONE), images)
    assert serious(page) == [], "result and history, phone"
    page.route("**/stylize", lambda route: None)  # the update waits: stopped while in flight, however fast
    page.select_option("#size", "1024")  # an automatic re-render, stopped while it runs
    page.wait_for_selector("#job-stop:visible")
    page.click("#job-stop")
    page.wait_for_selector("#status:has-text('Stopped')")
    assert "from before" in page.inner_text("#status") and "Updating" not in page.inner_text("#status")
    assert page.locator("#stylize").is_enabled() and page.locator("#job-row").is_hidden()
    assert page.locator("#outdated-note").is_visible() and result_size(page) == [384, 256]
    assert serious(page) == [], "cancelled, phone"
