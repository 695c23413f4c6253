"""The service on the onnxruntime backend (ADAIN_BACKEND=onnxruntime): it loads the graphs itself,
says so in /readyz and serves /stylize as the torch backend does."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from helpers import noise_image, png
from model.paths import PRESETS_DIR
from service.app import create_app
from service.settings import Settings


def test_service_runs_on_onnxruntime(onnx_dir, tmp_path):
    settings = Settings(backend="onnxruntime", onnx_dir=onnx_dir, presets_dir=PRESETS_DIR, state_dir=tmp_path,
                        frontend_dir=tmp_path / "none", default_style_size=128)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz").json()
        assert ready["ready"] and ready["backend"] == "onnxruntime" and ready["precision"] == "fp32"
        preset = client.get("/styles").json()["styles"][0]["id"]
        r = client.post("/stylize", files={"content": ("c.png", png(noise_image(120, 90, seed=5)), "image/png")},
                        data={"style_id": preset, "content_size": "0"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (120, 90)
        bad = client.post("/stylize", files={"content": ("c.png", b"not an image", "image/png")},
                          data={"style_id": preset})
        assert bad.status_code in (400, 415) and client.get("/healthz").status_code == 200


@pytest.mark.parametrize("backend, precision", [("torch", "int8"), ("onnxruntime", "bf16"), ("tensorflow", "auto")])
def test_settings_refuse_a_precision_the_backend_cannot_run(backend, precision):
    with pytest.raises(ValidationError):
        Settings(backend=backend, precision=precision)
