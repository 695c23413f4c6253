"""Decoders as versions (service/decoders.py): a reference-format decoder imported and served, a
damaged file refused at import, an unknown version a 400, a new default and a canary followed
without a restart, the versions listed."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from PIL import Image

from helpers import CONTENT, STYLE_A, files, psnr
from model.decoder import load_decoder, random_decoder, save_decoder
from service.cli import main as adain
from service.errors import BadRequest
from service.forms import LiveSettings
from service.tenants import LOCAL, Caller, TenantLimits
from service.decoders import SHIPPED, BadVersion, ModelStore, Rollout


def picture(r) -> Image.Image:
    assert r.status_code == 200, r.text
    return Image.open(io.BytesIO(r.content)).convert("RGB")


@pytest.fixture
def store(tmp_path, decoder_path) -> ModelStore:
    return ModelStore(tmp_path / "models", decoder_path)


def test_a_reference_decoder_is_imported_and_serves_the_same_picture(make_client, store, decoder_path, tmp_path):
    pth = save_decoder(load_decoder(decoder_path), tmp_path / "ref", "reference")  # the original releases' format
    assert pth.suffix == ".pth"
    stored = store.import_decoder(pth, "original")
    assert stored.name == "decoder.safetensors" and store.card("original")["sha256"]
    client = make_client(models_dir=store.root)
    shipped = client.post("/stylize", files=files(CONTENT, STYLE_A))
    imported = client.post("/stylize", files=files(CONTENT, STYLE_A), data={"decoder": "original"})
    assert shipped.headers["x-model-version"] == SHIPPED and imported.headers["x-model-version"] == "original"
    assert psnr(picture(shipped), picture(imported)) >= 60
    listed = client.get("/models").json()
    assert listed["default"] == SHIPPED and [v["name"] for v in listed["versions"]] == [SHIPPED, "original"]
    r = client.post("/stylize", files=files(CONTENT, STYLE_A), data={"decoder": "no-such"})
    assert r.status_code == 400 and "GET /models" in r.json()["detail"]
    assert client.post("/stylize", files=files(CONTENT, STYLE_A)).status_code == 200


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the foreign file
def test_a_damaged_or_foreign_file_is_refused_at_import(store, tmp_path, decoder_path):
    bad = {"truncated.safetensors": decoder_path.read_bytes()[:5000], "noise.pth": b"\x80\x04 not a decoder" * 50}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BadVersion, match="is not an AdaIN decoder"):
            store.import_decoder(tmp_path / name, "broken")
    with pytest.raises(BadVersion, match="version name"):
        store.import_decoder(decoder_path, "../escape")
    store.import_decoder(decoder_path, "copy")
    with pytest.raises(BadVersion, match="never overwritten"):
        store.import_decoder(decoder_path, "copy")
    assert store.names() == [SHIPPED, "copy"]  # nothing half-written left behind


def test_a_new_default_and_a_canary_are_followed_without_a_restart(make_client, store, tmp_path):
    save_decoder(random_decoder(seed=3), tmp_path / "other", "safetensors")
    store.import_decoder(tmp_path / "other" / "decoder.safetensors", "other")
    client = make_client(models_dir=store.root)
    version = lambda: client.post("/stylize", files=files(CONTENT, STYLE_A)).headers["x-model-version"]  # noqa: E731
    assert version() == SHIPPED
    store.set_rollout(Rollout("other"))
    assert version() == "other" and client.get("/readyz").json()["model_version"] == "other"
    canary = ["models", "default", SHIPPED, "--candidate", "other", "--canary", "50", "--dir", str(store.root)]
    assert adain(canary) == 0
    seen = Counter(version() for _ in range(40))
    assert set(seen) == {SHIPPED, "other"}, seen  # 40 requests at 50 %: both (all one way: 2 in 10^12)
    metrics = client.get("/metrics").text  # the canary against the default, by version
    assert f'adain_model_version_requests_total{{outcome="ok",version="other"}} {seen["other"] + 1}.0' in metrics
    assert 'adain_model_version_seconds_count{version="v7"}' in metrics
    with pytest.raises(BadVersion, match="no version"):
        store.set_rollout(Rollout("missing"))
    store.set_rollout(Rollout("other"))
    assert version() == "other"
    (store.root / "rollout.json").write_text("{not json")  # a damaged rollout: the last one read stays
    assert version() == "other" and version() == "other"


def test_a_video_job_and_a_stream_take_a_version(make_client, store, tmp_path):
    """A clip is rendered by one version from start to end (chosen at submit, the canary per job);
    a stream takes it in its settings; an unknown one is refused before any work."""
    from test_videos_api import clip, submit, wait

    store.import_decoder(save_decoder(random_decoder(seed=3), tmp_path / "w", "safetensors"), "other")
    client = make_client(models_dir=store.root)
    r = submit(client, clip(n=4), decoder="other")
    assert r.status_code == 202, r.text
    done = wait(client, r.json()["id"])
    assert done["state"] == "done" and done["decoder"] == "other"
    assert submit(client, clip(n=4), decoder="nope").status_code == 400
    style = client.post("/styles", files={"style": ("s.png", STYLE_A, "image/png")}).json()["id"]
    engine, local = client.app.state.engine, Caller(LOCAL, "user", TenantLimits())
    frames = engine.stream_frames(local, LiveSettings(style_id=[style], decoder="other"))
    assert frames.stylizer is engine.decoders.stylizer("other") is not engine.stylizer  # through that version
    with pytest.raises(BadRequest, match="no version 'nope'"):  # the stream says so in an error message
        engine.stream_frames(local, LiveSettings(style_id=[style], decoder="nope"))
