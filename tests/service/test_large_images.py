"""Large images through the API: tiled rendering behind the same request, the PNG streamed as it
is encoded, the deadline scaled with the output's size."""

from __future__ import annotations

import pytest

import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from helpers import STYLE_A, files, noise_image, png
from model.plan import Options
from model.stylizer import Stylizer
from service.app import create_app
from service.forms import StylizeForm
from service.settings import Settings
from service.uploads import Upload


def test_a_large_image_is_tiled_and_streamed(decoder_path, make_client, tmp_path):
    content = png(noise_image(200, 148, seed=5))
    whole = make_client().post("/stylize", files=files(content, STYLE_A), data={"content_size": "0"})
    assert whole.status_code == 200 and "content-length" in whole.headers
    tiny_tiles = Stylizer.load(decoder_path, device="cpu", precision="fp32", tile=64)
    settings = Settings(warmup=False, presets_dir=tmp_path / "none", frontend_dir=tmp_path / "none",
                        default_style_size=64, state_dir=tmp_path / "state", batch_max=2, workers=2,
                        batch_wait_ms=1)
    with TestClient(create_app(settings, stylizer=tiny_tiles)) as c:
        r = c.post("/stylize", files=files(content, STYLE_A), data={"content_size": "0"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert "content-length" not in r.headers  # encoded piece by piece while sent
        tiled = Image.open(io.BytesIO(r.content))
        assert tiled.size == (200, 148) and r.headers["x-image-width"] == "200"
        a, b = (np.asarray(Image.open(io.BytesIO(x)).convert("RGB"), np.float64) for x in (whole.content, r.content))
        assert 10 * np.log10(255 ** 2 / max(np.mean((a - b) ** 2), 1e-9)) >= 45
        jpeg = c.post("/stylize", files=files(content, STYLE_A), data={"content_size": "0", "format": "jpeg"})
        assert jpeg.status_code == 200 and Image.open(io.BytesIO(jpeg.content)).size == (200, 148)

        def batches() -> float:
            line = next(x for x in c.get("/metrics").text.splitlines() if x.startswith("adain_batch_size_count"))
            return float(line.split()[-1])

        # tiled images bypass the micro-batcher (one would hold every batch behind it); small ones use it
        assert batches() == 0
        assert c.post("/stylize", files=files(content, STYLE_A), data={"content_size": "32"}).status_code == 200
        assert batches() == 1


def test_the_deadline_grows_with_the_output(make_client):
    engine = make_client(request_timeout=30, timeout_per_megapixel=5).app.state.engine
    form = StylizeForm(content=Upload("content", png(Image.new("RGB", (4000, 3000)))))
    assert engine._timeout(form, Options(content_size=512)) == 30  # 683x512: the base deadline
    assert engine._timeout(form, Options(content_size=0)) == 60  # 12 MP x 5 s, read from the header
    assert engine._timeout(form, Options(content_size=6000)) == 8000 * 6000 / 1e6 * 5  # the size asked for
    assert engine._timeout(StylizeForm(content=Upload("content", b"junk")), Options()) == 30


def test_a_slow_machine_gets_deadlines_from_its_measured_speed(make_client):
    """The warm-up measures seconds per megapixel; a large request gets the margin times that when
    it is more than the setting's seconds per megapixel, so a slow CPU finishes instead of a 504."""
    client = make_client(request_timeout=30, timeout_per_megapixel=5, timeout_margin=3, warmup=True)
    engine = client.app.state.engine
    assert engine.seconds_per_mp > 0 and client.get("/limits").json()["seconds_per_megapixel"] > 0
    form = StylizeForm(content=Upload("content", png(Image.new("RGB", (4000, 3000)))))
    engine.seconds_per_mp = 4.0  # as on a slow CPU: 3 x 4 s/MP beats the setting's 5
    assert engine._timeout(form, Options(content_size=0)) == 12 * 3 * 4.0
    engine.seconds_per_mp = 1.0  # a fast one: the setting's 5 s/MP stays the floor
    assert engine._timeout(form, Options(content_size=0)) == 60


@pytest.mark.skipif(not __import__("model.convs").convs.winograd_available(), reason="this torch has no NNPACK")
def test_readyz_says_how_the_convolutions_run(make_client):
    client = make_client(warmup=True)  # the test model is fp32 on the CPU: its convolutions are measured
    ready = client.get("/readyz").json()
    assert ready["seconds_per_megapixel"] > 0
    assert set(ready["convolutions"]) <= {"direct", "winograd"} and sum(ready["convolutions"].values()) >= 18
