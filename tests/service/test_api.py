"""The HTTP contract through FastAPI's test client."""

from __future__ import annotations

import io
import threading

import numpy as np
from PIL import Image

from helpers import CONTENT, STYLE_A, STYLE_B, files, noise_image, phone_photo, png
from waiting import HANG, wait_for


def decode(r) -> np.ndarray:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), np.int16)


def test_round_trip_returns_png_of_content_size(client):
    r = client.post("/stylize", files=files(CONTENT, STYLE_A))
    img = decode(r)
    assert img.shape == (64, 96, 3)
    assert r.headers["x-image-width"] == "96" and r.headers["x-image-height"] == "64"
    stages = [s.split(";")[0] for s in r.headers["server-timing"].split(", ")]
    assert stages == ["decode", "encode-content", "encode-style", "stylize", "encode-image", "decoder"]
    assert r.headers["server-timing"].endswith('decoder;desc="v7"') and r.headers["x-model-version"] == "v7"
    assert int(r.headers["content-length"]) == len(r.content)


def test_content_size_and_formats(client):
    r = client.post("/stylize", files=files(CONTENT, STYLE_A), data={"content_size": "32", "format": "jpeg"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (48, 32)
    r = client.post("/stylize", files=files(CONTENT, STYLE_A), data={"format": "webp"})
    assert r.headers["content-type"] == "image/webp" and Image.open(io.BytesIO(r.content)).format == "WEBP"


def test_weights_alpha_and_color_match_change_the_output(client):
    base = decode(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B)))
    weighted = decode(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B), data={"weights": "1,9"}))
    repeated = decode(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B), data={"weights": ["1", "9"]}))
    half = decode(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B), data={"alpha": "0.3"}))
    paper = decode(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B), data={"color_match": "0"}))
    default = decode(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B), data={"color_match": "0.5"}))
    assert np.abs(base - weighted).mean() > 0.5
    assert np.array_equal(weighted, repeated)
    assert np.abs(base - half).mean() > 0.5
    assert np.abs(base - paper).mean() > 0.5 and np.array_equal(base, default)


def test_registered_style_gives_same_image_as_upload(client):
    r = client.post("/styles", files={"style": ("a.png", STYLE_A, "image/png")}, data={"name": "noise A"})
    assert r.status_code == 201
    info = r.json()
    assert info["kind"] == "uploaded" and info["name"] == "noise A" and info["style_size"] == 64
    by_upload = decode(client.post("/stylize", files=files(CONTENT, STYLE_A)))
    by_id = decode(client.post("/stylize", files=files(CONTENT), data={"style_id": info["id"]}))
    assert np.array_equal(by_upload, by_id)
    assert client.get(f"/styles/{info['id']}").json()["id"] == info["id"]
    assert [s["id"] for s in client.get("/styles").json()["styles"]] == [info["id"]]
    assert client.delete(f"/styles/{info['id']}").status_code == 204
    assert client.get(f"/styles/{info['id']}").status_code == 404
    assert client.post("/stylize", files=files(CONTENT), data={"style_id": info["id"]}).status_code == 400


def test_uploads_in_stylize_are_cached_but_not_listed(client):
    r1 = client.post("/stylize", files=files(CONTENT, STYLE_A))
    r2 = client.post("/stylize", files=files(CONTENT, STYLE_A))
    assert r1.headers["x-style-cache-hits"] == "0" and r2.headers["x-style-cache-hits"] == "1"
    assert client.get("/styles").json()["styles"] == []


def test_a_full_size_mask_is_fine_when_the_content_is_resized(make_client):
    client = make_client(max_output_pixels=20_000)  # content at 48x32 fits; the mask is 480x320
    mask = Image.new("L", (480, 320), 0)
    r = client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B, mask=png(mask)), data={"content_size": "32"})
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (48, 32)


def test_mask_with_two_styles(client):
    mask = Image.new("L", (48, 32), 0)
    mask.paste(255, (0, 0, 24, 32))
    img = decode(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B, mask=png(mask))))
    assert img.shape == (64, 96, 3)
    swapped = decode(client.post("/stylize", files=files(CONTENT, STYLE_B, STYLE_A, mask=png(mask))))
    assert np.abs(img - swapped).mean() > 0.5  # order of the style fields says which is foreground


def test_presets_are_listed_usable_and_protected(make_client, presets_dir):
    client = make_client(presets_dir=presets_dir)
    styles = client.get("/styles").json()["styles"]
    assert [(s["id"], s["kind"], s["name"]) for s in styles] == [("blue-waves", "preset", "Blue Waves")]
    thumb = client.get(styles[0]["thumbnail_url"])
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).format == "JPEG"
    assert client.post("/stylize", files=files(CONTENT), data={"style_id": "blue-waves"}).status_code == 200
    assert client.delete("/styles/blue-waves").status_code == 403
    assert client.get("/readyz").json()["presets"] == 1


def check_error(r, status: int, words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words in detail, detail


def test_error_statuses(make_client):
    client = make_client(max_file_bytes=50_000, max_image_pixels=100_000, max_output_pixels=20_000)
    check_error(client.post("/stylize", files=files(b"hello", STYLE_A)), 415, "content: not a readable image")
    check_error(client.post("/stylize", files=files(CONTENT, b"<svg/>")), 415, "style #1")
    check_error(client.post("/stylize", files=files(CONTENT)), 400, "at least one style")
    check_error(client.post("/stylize", files=files(CONTENT), data={"style_id": "nope"}), 400, "not registered")
    check_error(client.post("/stylize", files=files(CONTENT, STYLE_A, mask=png(Image.new("L", (96, 64))))), 400,
                "exactly 2 styles")
    check_error(client.post("/stylize", files=files(CONTENT, *[STYLE_A] * 9)), 400, "at most 8")
    check_error(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B), data={"weights": "1"}), 400,
                "one weight per style")
    check_error(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B), data={"weights": "0,0"}), 400,
                "all be zero")
    check_error(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B), data={"weights": "1,-2"}), 400, ">= 0")
    check_error(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B), data={"weights": "nan,1"}), 400,
                "finite")
    check_error(client.post("/stylize", files=files(CONTENT, STYLE_A), data={"alpha": "1.5"}), 422, "alpha")
    check_error(client.post("/stylize", files=files(CONTENT, STYLE_A), data={"color_match": "-1"}), 422, "color_match")
    check_error(client.post("/stylize", files=files(CONTENT, STYLE_A), data={"format": "gif"}), 422, "format")
    check_error(client.post("/stylize", files=[("style", ("s.png", STYLE_A, "image/png"))]), 422, "content")
    big = png(noise_image(400, 400, seed=9)) + b"\0" * 50_000
    check_error(client.post("/stylize", files=files(big, STYLE_A)), 413, "ADAIN_MAX_FILE_BYTES")
    bomb = png(Image.new("1", (1000, 1000)))
    check_error(client.post("/stylize", files=files(bomb, STYLE_A)), 413, "1000000 pixels")
    check_error(client.post("/stylize", files=files(CONTENT, STYLE_A), data={"content_size": "512"}), 413,
                "smaller size")
    # and after all of that, it still works
    assert client.post("/stylize", files=files(CONTENT, STYLE_A)).status_code == 200


def test_body_limit_refuses_before_reading(make_client):
    client = make_client(max_total_bytes=10_000)
    r = client.post("/stylize", files=files(CONTENT + b"\0" * 20_000, STYLE_A))
    check_error(r, 413, "ADAIN_MAX_TOTAL_BYTES")

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(10):
            yield b"x" * 4096

    r = client.post("/stylize", content=chunks(), headers={"content-type": "multipart/form-data; boundary=abc"})
    check_error(r, 413, "limit is 10000")


def test_api_keys(make_client):
    client = make_client(api_keys="k1,secret-2")
    check_error(client.post("/stylize", files=files(CONTENT, STYLE_A)), 401, "X-API-Key")
    check_error(client.get("/styles", headers={"X-API-Key": "wrong"}), 401, "API key")
    assert client.post("/stylize", files=files(CONTENT, STYLE_A), headers={"X-API-Key": "secret-2"}).status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200
    assert client.get("/readyz").status_code == 200


class Gate:
    """Wraps stylizer.render_whole so a test can hold the model worker busy."""

    def __init__(self, monkeypatch, stylizer):
        self.entered, self.release = threading.Event(), threading.Event()
        real = stylizer.render_whole

        def gated(*a, **kw):
            self.entered.set()
            self.release.wait(HANG)
            return real(*a, **kw)

        monkeypatch.setattr(stylizer, "render_whole", gated)


def test_queue_full_gives_503_with_retry_after(make_client, stylizer, monkeypatch):
    client = make_client(workers=1, queue_depth=0)
    gate = Gate(monkeypatch, stylizer)
    results = {}
    t = threading.Thread(target=lambda: results.setdefault("first", client.post("/stylize", files=files(CONTENT, STYLE_A))))
    t.start()
    assert gate.entered.wait(HANG)
    r = client.post("/stylize", files=files(CONTENT, STYLE_A))
    check_error(r, 503, "busy")
    assert int(r.headers["retry-after"]) >= 1
    # refused before the body is read: even a body that is not multipart at all gets the 503
    garbage = client.post("/stylize", content=b"\0" * 1000, headers={"content-type": "text/plain"})
    check_error(garbage, 503, "busy")
    assert client.get("/styles").status_code == 200  # reads are not queued
    metrics = client.get("/metrics").text
    assert "adain_in_flight 1.0" in metrics
    gate.release.set()
    t.join(HANG)
    assert results["first"].status_code == 200
    assert client.post("/stylize", files=files(CONTENT, STYLE_A)).status_code == 200


def test_timeout_gives_504_and_frees_the_worker(make_client, stylizer, monkeypatch):
    client = make_client(workers=1, queue_depth=0, request_timeout=0.3)
    gate = Gate(monkeypatch, stylizer)
    check_error(client.post("/stylize", files=files(CONTENT, STYLE_A)), 504, "longer than 0.3 s")
    gate.release.set()
    state = client.app.state.engine
    wait_for(lambda: state.queue.in_flight == 0, "the timed-out job to stop")
    assert state.queue.in_flight == 0 and state.queue.waiting == 0
    assert client.post("/stylize", files=files(CONTENT, STYLE_A)).status_code == 200


def test_early_busy_503_is_counted_under_its_route(client, monkeypatch):
    """A full queue answers 503 before routing; the metric still names /stylize, not "other"."""
    queue = client.app.state.engine.queue
    monkeypatch.setattr(queue, "_pending", {"flood": queue.capacity})  # every slot taken, as under a flood
    r = client.post("/stylize", files=files(CONTENT, STYLE_A))
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    assert 'adain_requests_total{method="POST",route="/stylize",status="503"}' in client.get("/metrics").text


def test_metrics_move(client):
    def value(text: str, name: str) -> float:
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    before = client.get("/metrics").text
    client.post("/stylize", files=files(CONTENT, STYLE_A))
    client.post("/stylize", files=files(CONTENT, STYLE_A))
    client.post("/stylize", files=files(b"junk", STYLE_A))
    after = client.get("/metrics").text
    ok = 'adain_requests_total{method="POST",route="/stylize",status="200"}'
    assert value(after, ok) - value(before, ok) == 2
    assert 'route="/stylize",status="415"' in after
    assert value(after, "adain_style_cache_hits_total") - value(before, "adain_style_cache_hits_total") >= 1
    assert value(after, 'adain_request_seconds_count{route="/stylize"}') >= 3
    assert "adain_model_load_seconds" in after and "adain_queue_depth 0.0" in after


def test_docs_describe_every_field_and_work_offline(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn." not in docs.text  # no CDN: works for offline users
    assert "/docs-static/swagger-ui-bundle.js" in docs.text
    js = client.get("/docs-static/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert client.get("/redoc").status_code == 200 and "cdn." not in client.get("/redoc").text
    spec = client.get("/openapi.json").json()
    props = spec["paths"]["/stylize"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    expected = {"content", "content_id", "style", "style_id", "weights", "alpha", "preserve_color", "color_match",
                "mask", "content_size", "style_size", "format", "decoder", "matching"}
    assert set(props) == expected
    assert all(props[f].get("description") for f in expected)
    assert set(spec["paths"]) >= {"/stylize", "/styles", "/styles/{style_id}", "/healthz", "/readyz", "/metrics"}


def test_a_bug_is_a_500_not_a_400_and_the_server_goes_on(make_client, stylizer, monkeypatch):
    """Only the model's input errors are the client's fault: a ValueError from a bug is a 500 (its
    traceback logged), never dressed up as a 400."""
    from fastapi.testclient import TestClient

    client = make_client()
    quiet = TestClient(client.app, raise_server_exceptions=False)
    real = stylizer.render_whole

    def broken(plans):
        raise ValueError("an internal invariant failed")

    monkeypatch.setattr(stylizer, "render_whole", broken)
    r = quiet.post("/stylize", files=files(CONTENT, STYLE_A))
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert "internal error" in r.json()["detail"] and "invariant" not in r.json()["detail"]
    monkeypatch.setattr(stylizer, "render_whole", real)
    assert quiet.post("/stylize", files=files(CONTENT, STYLE_A)).status_code == 200


def test_options_are_checked_before_any_decoding(client, monkeypatch):
    """An out-of-range option is refused (422, naming it) before the upload is decoded."""
    import service.engine

    def no_decoding(*a, **kw):
        raise AssertionError("decoded an upload of a request that was already refused")

    monkeypatch.setattr(service.engine, "decode", no_decoding)
    check_error(client.post("/stylize", files=files(b"not even an image", STYLE_A), data={"alpha": "2"}), 422,
                "alpha")
    check_error(client.post("/styles", files={"style": ("s.png", b"junk", "image/png")},
                            data={"style_size": "99999"}), 422, "style_size")


def test_a_heic_phone_photo_stylizes_upright_and_registers_as_a_style(client):
    r = client.post("/stylize", files=[("content", ("IMG_0001.HEIC", phone_photo(96, 64), "image/heic"))],
                    data={"style_id": register_style(client)})
    assert r.status_code == 200, r.text
    assert Image.open(io.BytesIO(r.content)).size == (64, 96)  # upright, as the phone shows it
    s = client.post("/styles", files={"style": ("s.heic", phone_photo(64, 64, 1), "image/heic")})
    assert s.status_code == 201
    assert {"HEIC", "AVIF"} <= set(client.get("/limits").json()["input_formats"])
    bad = client.post("/stylize", files=files(b"ftypheic but not really", STYLE_A))
    assert bad.status_code == 415 and "HEIC" in bad.json()["detail"]


def register_style(client) -> str:
    return client.post("/styles", files={"style": ("s.png", STYLE_A, "image/png")}).json()["id"]


def test_preview_shows_a_heic_photo_turned_small_with_its_full_size(client):
    """What a page shows of a photo it cannot draw: a JPEG at most 512 px, EXIF applied, and
    the photo's full (turned) size in the headers; a file that is no image answers 415."""
    r = client.post("/preview", files={"image": ("IMG_1.HEIC", phone_photo(1200, 600), "image/heic")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert (r.headers["x-image-width"], r.headers["x-image-height"]) == ("600", "1200")
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (256, 512)
    assert img.getpixel((128, 8))[1] > 150  # the green edge is on top: turned as the phone meant
    bad = client.post("/preview", files={"image": ("notes.png", b"not an image", "image/png")})
    assert bad.status_code == 415 and client.get("/limits").status_code == 200
    accept = client.get("/limits").json()["input_accept"]
    assert "image/heic" in accept and ".tif" in accept and "image/jxl" not in accept
