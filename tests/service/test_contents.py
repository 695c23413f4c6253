"""Content features kept between renders of the same photo (service/contents.py): an update with
other α, weights, colours, mask or styles runs the decoder alone and gives the picture of a render
from scratch; per tenant, bounded in bytes, and a content_id stands for the file while it is kept."""

from __future__ import annotations

import io

from PIL import Image

from helpers import CONTENT, STYLE_A, STYLE_B, files, noise_image, png, psnr

A, B = {"X-API-Key": "key-of-a"}, {"X-API-Key": "key-of-b"}


def stages(r) -> dict[str, float]:
    return {s.split(";")[0]: float(s.split("dur=")[1]) for s in r.headers["server-timing"].split(", ") if "dur=" in s}


def picture(r) -> Image.Image:
    assert r.status_code == 200, r.text
    return Image.open(io.BytesIO(r.content)).convert("RGB")


def metric(client, name: str) -> float:
    line = next(x for x in client.get("/metrics").text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


def test_an_update_runs_the_decoder_alone_and_gives_the_same_picture(make_client):
    client, fresh = make_client(), make_client(content_cache_mb=0)
    first = client.post("/stylize", files=files(CONTENT, STYLE_A), data={"alpha": "0.5"})
    assert first.headers["x-content-cache"] == "miss" and "encode-content" in stages(first)
    cases = [({"alpha": "0.8"}, files(CONTENT, STYLE_A)), ({"color_match": "1"}, files(CONTENT, STYLE_A)),
             ({"weights": "1,3"}, files(CONTENT, STYLE_A, STYLE_B)),
             ({}, files(CONTENT, STYLE_A, STYLE_B, mask=png(Image.new("L", (96, 64), 255)))),
             ({"preserve_color": "true"}, files(CONTENT, STYLE_B)), ({"matching": "efdm"}, files(CONTENT, STYLE_A))]
    for i, (data, parts) in enumerate(cases):
        r = client.post("/stylize", files=parts, data=data)
        assert r.headers["x-content-cache"] == "hit" and stages(r)["encode-content"] == 0.0, data
        assert r.headers["x-content-id"] == first.headers["x-content-id"]
        assert psnr(picture(r), picture(fresh.post("/stylize", files=parts, data=data))) >= 60, data
        assert metric(client, "adain_content_cache_hits_total") == i + 1
    assert fresh.post("/stylize", files=files(CONTENT, STYLE_A)).headers["x-content-cache"] == "off"


def test_a_content_id_stands_for_the_file_for_its_tenant_while_it_is_kept(make_client):
    client = make_client(api_keys="key-of-a,key-of-b")
    first = client.post("/stylize", files=files(CONTENT, STYLE_A), headers=A, data={"content_size": "48"})
    cid = first.headers["x-content-id"]
    style = [("style", ("s.png", STYLE_A, "image/png"))]
    again = client.post("/stylize", files=style, data={"content_id": cid, "alpha": "0.6", "content_size": "48"},
                        headers=A)
    assert again.status_code == 200 and again.headers["x-content-cache"] == "hit"
    assert picture(again).size == picture(first).size == (72, 48)
    # another tenant's id answers as one never seen, and B's own render of the same bytes is a miss
    theirs = client.post("/stylize", files=style, data={"content_id": cid, "content_size": "48"}, headers=B)
    unknown = client.post("/stylize", files=style, data={"content_id": "0" * 32, "content_size": "48"}, headers=B)
    assert theirs.status_code == unknown.status_code == 404 and theirs.json() == unknown.json()
    assert "send the content file again" in theirs.json()["detail"]
    other = client.post("/stylize", files=files(CONTENT, STYLE_A), headers=B, data={"content_size": "48"})
    assert other.headers["x-content-cache"] == "miss"
    # the id names the content at its size; both or neither are refused
    assert client.post("/stylize", files=style, data={"content_id": cid}, headers=A).status_code == 404
    both = client.post("/stylize", files=files(CONTENT, STYLE_A), data={"content_id": cid}, headers=A)
    neither = client.post("/stylize", files=style, headers=A)
    assert both.status_code == neither.status_code == 422
    assert client.post("/stylize", files=style, data={"content_id": "../../etc"}, headers=A).status_code == 422


def test_the_features_kept_are_bounded_in_bytes(make_client):
    """64² contents keep 8·8·512 float16 features (64 KB): a 150 KB cache holds two, the least
    recently used goes first, and a content larger than the cache is never kept."""
    client = make_client(content_cache_mb=150 / 1024)
    photos = [png(noise_image(64, 64, seed=70 + i)) for i in range(3)]
    send = lambda photo, size="0": client.post("/stylize", files=files(photo, STYLE_A),  # noqa: E731
                                               data={"content_size": size})
    for photo in photos:
        assert send(photo).headers["x-content-cache"] == "miss"
    assert metric(client, "adain_content_cache_bytes") == 2 * 64 * 1024
    assert send(photos[2]).headers["x-content-cache"] == "hit"
    assert send(photos[0]).headers["x-content-cache"] == "miss"  # gone: the least recently used
    assert send(photos[1], "128").headers["x-content-cache"] == "off"  # 256 KB: more than the whole cache
    assert metric(client, "adain_content_cache_bytes") <= 150 * 1024
    assert metric(client, "adain_content_cache_misses_total") == 5
