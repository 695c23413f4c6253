"""``matching`` over HTTP: EFDM on /stylize (uploads, registered styles, weights, masks), on
/videos, in the stored code; refused with a clear 4xx where it cannot apply."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import CONTENT, STYLE_A, STYLE_B, files, png
from model.efdm import Table
from service.stores import codec
from test_api import check_error, decode
from test_videos_api import clip, submit, wait


def test_efdm_renders_its_own_picture_with_every_option(client):
    adain = decode(client.post("/stylize", files=files(CONTENT, STYLE_A)))
    efdm = decode(client.post("/stylize", files=files(CONTENT, STYLE_A), data={"matching": "efdm"}))
    assert efdm.shape == adain.shape == (64, 96, 3)
    assert np.abs(efdm - adain).mean() > 0.5
    # a mix weighted (1, 0) is the first style; alpha, preserve_color and masks take effect
    one = decode(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B),
                             data={"matching": "efdm", "weights": "1,0"}))
    assert np.array_equal(one, efdm)
    for data in ({"alpha": "0.4"}, {"preserve_color": "true"}, {"weights": "1,1"}):
        styles = (STYLE_A, STYLE_B) if "weights" in data else (STYLE_A,)
        other = decode(client.post("/stylize", files=files(CONTENT, *styles), data={"matching": "efdm", **data}))
        assert np.abs(other - efdm).mean() > 0.5, data
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (0, 0, 48, 64))
    masked = decode(client.post("/stylize", files=files(CONTENT, STYLE_A, STYLE_B, mask=png(mask)),
                                data={"matching": "efdm"}))
    assert np.abs(masked[:, 56:] - efdm[:, 56:]).mean() > np.abs(masked[:, :40] - efdm[:, :40]).mean()


def test_a_registered_style_keeps_its_distribution(client):
    sid = client.post("/styles", files={"style": ("a.png", STYLE_A, "image/png")}).json()["id"]
    by_upload = decode(client.post("/stylize", files=files(CONTENT, STYLE_A), data={"matching": "efdm"}))
    by_id = decode(client.post("/stylize", files=files(CONTENT), data={"style_id": sid, "matching": "efdm"}))
    assert np.array_equal(by_upload, by_id)


def test_a_style_stored_without_a_distribution_is_refused_for_efdm_only(client):
    registry = client.app.state.engine.registry
    sid = client.post("/styles", files={"style": ("a.png", STYLE_A, "image/png")}).json()["id"]
    entry = registry.store.get(sid)
    old = dataclasses.replace(entry.code, quantiles=None)  # as codes were stored before EFDM
    registry.store.delete(sid)
    registry.store.add(dataclasses.replace(entry, code=old), 100)
    r = client.post("/stylize", files=files(CONTENT), data={"style_id": sid, "matching": "efdm"})
    check_error(r, 400, "register that style again")
    assert client.post("/stylize", files=files(CONTENT), data={"style_id": sid}).status_code == 200


def test_an_unknown_matching_is_a_422_naming_the_field(client):
    r = client.post("/stylize", files=files(CONTENT, STYLE_A), data={"matching": "wct"})
    assert r.status_code == 422 and "matching" in r.text
    assert client.get("/readyz").status_code == 200


def test_the_stored_code_carries_the_table_and_refuses_a_damaged_one(client):
    sid = client.post("/styles", files={"style": ("a.png", STYLE_A, "image/png")}).json()["id"]
    code = client.app.state.engine.registry.store.get(sid).code
    back, _, _ = codec.decode(codec.encode(code, {}))
    assert torch.equal(back.quantiles.values, code.quantiles.values)
    assert torch.equal(back.quantiles.ranks, code.quantiles.ranks)
    table = code.quantiles
    for bad, words in ((Table(table.values[:, :10], table.ranks[:10]), "quantile"),
                       (Table(table.values, table.ranks.flip(0)), "quantile_ranks must rise")):
        with pytest.raises(codec.CorruptValue, match=words):
            codec.decode(codec.encode(dataclasses.replace(code, quantiles=bad), {}))


def test_a_video_job_renders_with_efdm(client):
    job = submit(client, clip(), matching="efdm").json()
    s = wait(client, job["id"])
    assert s["state"] == "done" and s["matching"] == "efdm", s
    r = client.get(job["result_url"])
    assert r.status_code == 200 and r.content[4:8] == b"ftyp"
    assert submit(client, clip(), matching="bogus").status_code == 422
