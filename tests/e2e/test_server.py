"""The service as users run it: a real uvicorn process on 127.0.0.1."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from serverproc import run_server
from helpers import CONTENT, STYLE_A, STYLE_B, files, noise_image, png


def test_round_trip_and_registered_style(server):
    with server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert ready["ready"] and ready["presets"] == 1 and ready["device"] == "cpu"
        # started as users start it: warmed up, this machine's speed and its convolutions measured
        assert ready["seconds_per_megapixel"] > 0 and sum(ready["convolutions"].values()) >= 18, ready
        r = c.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B), data={"weights": "2,1", "alpha": "0.8"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        img = Image.open(io.BytesIO(r.content))
        img.load()  # a complete, valid PNG
        assert img.size == (96, 64)
        sid = c.post("/styles", files={"style": ("a.png", STYLE_A, "image/png")}).json()["id"]
        by_id = c.post("/stylize", files=files(CONTENT), data={"style_id": sid})
        by_upload = c.post("/stylize", files=files(CONTENT, STYLE_A))
        assert by_id.content == by_upload.content
        assert c.post("/stylize", files=files(CONTENT), data={"style_id": "ocean"}).status_code == 200


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server):
    mask = png(Image.new("L", (48, 32), 255))
    bad = [
        (files(b"", STYLE_A), 415),
        (files(b"GIF89a garbage", STYLE_A), 415),
        (files(CONTENT, b"<html></html>"), 415),
        (files(CONTENT, STYLE_A, mask=mask), 400),
        (files(CONTENT), 400),
        (files(CONTENT, STYLE_A, mask=png(Image.new("L", (10, 40)))), 400),
    ]
    with server.client() as c:
        for parts, status in bad:
            r = c.post("/stylize", files=parts)
            assert r.status_code == status, (status, r.text)
            assert isinstance(r.json()["detail"], str)
            assert c.post("/stylize", files=files(CONTENT, STYLE_A)).status_code == 200
        r = c.post("/stylize", files=files(CONTENT, STYLE_A), data={"alpha": "-1"})
        assert r.status_code == 422
        r = c.post("/stylize", content=b"not multipart", headers={"content-type": "text/plain"})
        assert r.status_code == 422
        assert server.proc.poll() is None


def test_queue_full_returns_503_with_retry_after(server_env, tmp_path):
    """One worker, no waiting room, several concurrent large requests: some are turned away."""
    big = png(noise_image(512, 512, seed=5))
    env = {**server_env, "ADAIN_WORKERS": "1", "ADAIN_QUEUE_DEPTH": "0", "ADAIN_DEFAULT_CONTENT_SIZE": "512",
           "ADAIN_DEFAULT_STYLE_SIZE": "256"}
    with run_server(tmp_path, **env) as s, s.client() as c, ThreadPoolExecutor(4) as pool:
        rs = list(pool.map(lambda _: c.post("/stylize", files=files(big, STYLE_A)), range(4)))
        statuses = sorted(r.status_code for r in rs)
        assert statuses[0] == 200 and statuses[-1] == 503, statuses
        busy = [r for r in rs if r.status_code == 503]
        assert all(int(r.headers["retry-after"]) >= 1 for r in busy)
        assert c.post("/stylize", files=files(CONTENT, STYLE_A)).status_code == 200
        metrics = c.get("/metrics").text
        assert 'route="/stylize",status="503"' in metrics
