"""The registered-styles API over the embedded store: durable, never evicted by inline uploads,
paged, and a full store refused with the documented error."""

from __future__ import annotations

from helpers import CONTENT, STYLE_A, STYLE_B, files, noise_image, png


def register(client, style: bytes, name: str | None = None):
    return client.post("/styles", files={"style": ("s.png", style, "image/png")}, data={"name": name} if name else {})


def test_inline_uploads_never_evict_a_registered_style(make_client):
    client = make_client(style_cache_size=2)
    sid = register(client, STYLE_A).json()["id"]
    for i in range(6):
        assert client.post("/stylize", files=files(CONTENT, png(noise_image(24, 24, seed=50 + i)))).status_code == 200
    assert len(client.app.state.engine.registry.cache) == 2  # the cache stayed bounded
    assert client.post("/stylize", files=files(CONTENT), data={"style_id": sid}).status_code == 200


def test_a_registered_style_outlives_the_app(make_client, tmp_path):
    sid = register(make_client(), STYLE_A, "kept").json()["id"]
    again = make_client()  # a new app (a restart) on the same state folder
    assert again.get(f"/styles/{sid}").json()["name"] == "kept"
    assert again.post("/stylize", files=files(CONTENT), data={"style_id": sid}).status_code == 200


def test_a_full_store_answers_507_and_keeps_its_styles(make_client):
    client = make_client(max_registered_styles=2)
    ids = [register(client, s).json()["id"] for s in (STYLE_A, STYLE_B)]
    r = register(client, png(noise_image(32, 32, seed=9)))
    assert r.status_code == 507 and "ADAIN_MAX_REGISTERED_STYLES" in r.json()["detail"]
    assert register(client, STYLE_A, "renamed").status_code == 201  # one it holds is not a new one
    assert [s["id"] for s in client.get("/styles").json()["styles"]] == ids
    assert client.delete(f"/styles/{ids[0]}").status_code == 204
    assert register(client, png(noise_image(32, 32, seed=9))).status_code == 201


def test_styles_are_listed_presets_first_then_in_registration_order_a_page_at_a_time(make_client, presets_dir):
    client = make_client(presets_dir=presets_dir)
    ids = [register(client, png(noise_image(32, 32, seed=s))).json()["id"] for s in (11, 12, 13)]
    seen, cursor, pages = [], None, 0
    while True:
        page = client.get("/styles", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [s["id"] for s in page["styles"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["blue-waves", *ids] and pages == 2
    assert client.get("/styles", params={"cursor": "bm9wZQ"}).status_code == 422
    assert client.get("/styles", params={"limit": 0}).status_code == 422
    assert client.delete("/styles/blue-waves").status_code == 403 and client.delete("/styles/nope").status_code == 404
