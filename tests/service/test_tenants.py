"""Tenants: keys resolve to callers (ADAIN_API_KEYS, the keys file, or the open local tenant); a
tenant sees, uses and deletes only its own styles and video jobs, another's id answers as an
unknown one; admins see all; quotas, TTLs, rate limits (429 with RateLimit headers) and request
ids. Across real replicas on Redis: tests/e2e/test_tenant_replicas.py."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from PIL import Image

from helpers import CONTENT, STYLE_A, STYLE_B, files, noise_image, png
from service.tenants import LOCAL, KeysFileError, TenantLimits, Tenants, add_key, digest, key_tenant, read_keys_file
from test_videos_api import clip, wait

A, B = {"X-API-Key": "key-of-a"}, {"X-API-Key": "key-of-b"}


def register(client, headers, style: bytes = STYLE_A, **data) -> str:
    r = client.post("/styles", files={"style": ("s.png", style, "image/png")}, data=data, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def use(client, headers, style_id: str):
    return client.post("/stylize", files=files(CONTENT), data={"style_id": style_id}, headers=headers)


def keys_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    return path


def test_without_keys_everyone_is_the_local_tenant(client):
    sid = register(client, {})
    listed = client.get("/styles").json()["styles"]
    assert [(s["id"], s["tenant"]) for s in listed] == [(sid, LOCAL)]
    assert use(client, {}, sid).status_code == 200
    assert client.get("/limits").json()["api_key_required"] is False


def test_a_tenant_sees_uses_and_deletes_only_its_own_styles(make_client):
    client = make_client(api_keys="key-of-a,key-of-b")
    mine = register(client, A, name="a's")
    same_image = register(client, B)  # the same image registered by B: its own id, nothing shared
    assert same_image != mine
    assert [s["id"] for s in client.get("/styles", headers=A).json()["styles"]] == [mine]
    assert [s["id"] for s in client.get("/styles", headers=B).json()["styles"]] == [same_image]
    assert client.get("/styles", headers=A).json()["styles"][0]["tenant"] == key_tenant("key-of-a")
    unknown = client.get("/styles/no-such-id", headers=B)
    other = client.get(f"/styles/{mine}", headers=B)
    assert other.status_code == unknown.status_code == 404
    assert other.json()["detail"].replace(mine, "ID") == unknown.json()["detail"].replace("no-such-id", "ID")
    r = use(client, B, mine)
    assert r.status_code == 400 and "not registered" in r.json()["detail"]
    assert client.delete(f"/styles/{mine}", headers=B).status_code == 404
    assert client.get(f"/styles/{mine}", headers=A).status_code == 200 and use(client, A, mine).status_code == 200
    assert client.delete(f"/styles/{mine}", headers=A).status_code == 204
    assert client.get(f"/styles/{mine}", headers=A).status_code == 404
    assert client.get("/styles", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/styles").status_code == 401


def test_a_registered_style_keeps_its_picture_for_its_tenant_only(make_client):
    """A 128 px JPEG kept with the style: listed with the style, its tenant's (another tenant and
    no key answer as for an unknown id), gone with it; off, only the code is kept."""
    client = make_client(api_keys="key-of-a,key-of-b")
    mine = register(client, A, style=png(noise_image(300, 200, seed=5)))
    listed = client.get("/styles", headers=A).json()["styles"][0]
    assert listed["thumbnail_url"] == f"/styles/{mine}/thumbnail"
    r = client.get(listed["thumbnail_url"], headers=A)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and len(r.content) < 16 * 1024
    assert Image.open(io.BytesIO(r.content)).size == (128, 85)
    assert client.get(listed["thumbnail_url"], headers=B).status_code == 404
    assert client.get(listed["thumbnail_url"]).status_code == 401
    assert client.delete(f"/styles/{mine}", headers=A).status_code == 204
    assert client.get(listed["thumbnail_url"], headers=A).status_code == 404
    plain = make_client(keep_style_thumbnails=False)
    sid = register(plain, {})
    assert plain.get("/styles").json()["styles"][0]["thumbnail_url"] is None
    assert plain.get(f"/styles/{sid}/thumbnail").status_code == 404


def test_inline_style_cache_hits_are_per_tenant(make_client):
    client = make_client(api_keys="key-of-a,key-of-b")
    post = lambda h: client.post("/stylize", files=files(CONTENT, STYLE_B), headers=h)  # noqa: E731
    assert post(A).headers["x-style-cache-hits"] == "0"
    assert post(A).headers["x-style-cache-hits"] == "1"
    assert post(B).headers["x-style-cache-hits"] == "0"  # B learns nothing of what A sent


def test_a_tenant_sees_and_deletes_only_its_own_video_jobs(make_client):
    client = make_client(api_keys="key-of-a,key-of-b")
    r = client.post("/videos", headers=A, files={"video": ("c.mp4", clip(), "video/mp4"),
                                                 "style": ("s.png", STYLE_A, "image/png")})
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    for path in (f"/videos/{job}", f"/videos/{job}/result"):
        assert client.get(path, headers=B).status_code == 404
    assert client.delete(f"/videos/{job}", headers=B).status_code == 404
    assert wait(client, job, headers=A)["state"] == "done"
    assert client.get(f"/videos/{job}/result", headers=A).status_code == 200
    assert client.get(f"/videos/{job}/result", headers=B).status_code == 404
    assert client.delete(f"/videos/{job}", headers=A).status_code == 204


def test_an_admin_lists_and_deletes_everything(make_client, tmp_path):
    path = keys_file(tmp_path, f'''
[[tenant]]
name = "acme"
keys = ["{digest('acme-key')}"]

[[tenant]]
name = "beta"
keys = ["{digest('beta-key')}"]

[[tenant]]
name = "ops"
role = "admin"
keys = ["{digest('ops-key')}"]
''')
    client = make_client(keys_file=path)
    acme, beta, ops = ({"X-API-Key": f"{n}-key"} for n in ("acme", "beta", "ops"))
    a, b = register(client, acme), register(client, beta, STYLE_B)
    assert {s["id"] for s in client.get("/styles", headers=ops).json()["styles"]} == {a, b}
    assert [s["id"] for s in client.get("/styles?tenant=beta", headers=ops).json()["styles"]] == [b]
    assert client.get("/styles?tenant=beta", headers=acme).status_code == 403
    assert [s["id"] for s in client.get("/styles?tenant=acme", headers=acme).json()["styles"]] == [a]
    assert client.delete(f"/styles/{a}", headers=ops).status_code == 204
    assert client.get(f"/styles/{a}", headers=acme).status_code == 404


def test_each_tenant_has_a_quota_of_registered_styles(make_client):
    client = make_client(api_keys="key-of-a,key-of-b", max_styles_per_tenant=1)
    register(client, A)
    r = client.post("/styles", files={"style": ("s.png", STYLE_B, "image/png")}, headers=A)
    assert r.status_code == 507 and key_tenant("key-of-a") in r.json()["detail"]
    register(client, A)  # the same style again is not a new one
    register(client, B, STYLE_B)  # another tenant still registers


def test_a_style_registered_with_a_ttl_expires(client):
    kept, passing = register(client, {}), register(client, {}, STYLE_B, ttl="2")
    info = client.get(f"/styles/{passing}").json()
    assert info["expires"] is not None and client.get(f"/styles/{kept}").json()["expires"] is None
    time.sleep(2.3)
    assert client.get(f"/styles/{passing}").status_code == 404
    assert [s["id"] for s in client.get("/styles").json()["styles"]] == [kept]
    for bad in ("0", "-5", "soon", "1e12"):
        r = client.post("/styles", files={"style": ("s.png", STYLE_A, "image/png")}, data={"ttl": bad})
        assert r.status_code == 422 and "ttl" in r.json()["detail"]


def test_the_rate_limit_answers_429_with_its_headers_per_tenant(make_client):
    client = make_client(api_keys="key-of-a,key-of-b", rate_limit="3/minute")
    answers = [client.get("/styles", headers=A) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[0].headers["ratelimit-limit"] == "3" and answers[0].headers["ratelimit-remaining"] == "2"
    over = answers[3]
    assert 0 < int(over.headers["retry-after"]) <= 60 and over.headers["ratelimit-remaining"] == "0"
    assert "rate limit" in over.json()["detail"]
    assert client.get("/styles", headers=B).status_code == 200  # B's own count
    assert client.get("/healthz").status_code == 200  # operations are not rate limited
    metrics = client.get("/metrics").text
    assert f'adain_tenant_throttled_total{{reason="rate",tenant="{key_tenant("key-of-a")}"}} 1.0' in metrics
    assert f'adain_tenant_requests_total{{status="429",tenant="{key_tenant("key-of-a")}"}} 1.0' in metrics


def test_model_seconds_are_counted_per_tenant(make_client):
    client = make_client(api_keys="key-of-a")
    assert client.post("/stylize", files=files(CONTENT, STYLE_A), headers=A).status_code == 200
    line = next(x for x in client.get("/metrics").text.splitlines()
                if x.startswith(f'adain_tenant_model_seconds_total{{tenant="{key_tenant("key-of-a")}"}}'))
    assert float(line.split()[-1]) > 0


def test_every_answer_carries_a_request_id(client):
    given = client.get("/styles", headers={"X-Request-ID": "trace-42.a"})
    assert given.headers["x-request-id"] == "trace-42.a"
    made = client.post("/stylize", files=files(b"junk", STYLE_A))
    assert made.status_code == 415 and len(made.headers["x-request-id"]) == 32
    insane = client.get("/styles", headers={"X-Request-ID": "x" * 100})
    assert insane.headers["x-request-id"] != "x" * 100


def test_keys_files_are_read_and_bad_ones_name_their_line(tmp_path):
    good = keys_file(tmp_path, f'''# tenants
[[tenant]]
name = "acme"
keys = ["{digest('k1')}", "{digest('k2')}"]
rate_limit = "5/second"
weight = 2
''')
    tenants = Tenants.from_settings(["plain-key"], good, TenantLimits())
    assert tenants.resolve("k1") == tenants.resolve("k2") and tenants.resolve("k1").tenant == "acme"
    assert tenants.resolve("k1").limits.weight == 2 and tenants.resolve("k1").limits.rate_limit == "5/second"
    assert tenants.resolve("plain-key").tenant == key_tenant("plain-key") and tenants.resolve("k3") is None
    assert tenants.required and tenants.resolve(None) is None
    d = digest("x")
    bad = {
        "line 2": f'[[tenant]]\nname = a\nkeys = ["{d}"]\n',  # not TOML: tomllib names the line
        ":4: unknown field 'colour'": f'[[tenant]]\nname = "a"\nkeys = ["{d}"]\ncolour = "red"\n',
        ":7: key digest": f'[[tenant]]\nname = "a"\nkeys = ["{d}"]\n\n[[tenant]]\nname = "b"\nkeys = ["{d}"]\n',
        ":6: tenant 'a' appears twice": f'[[tenant]]\nname = "a"\nkeys = ["{d}"]\n[[tenant]]\n'
                                        f'keys = ["{digest("y")}"]\nname = "a"\n',
        ":3: keys must be": '[[tenant]]\nname = "a"\nkeys = ["the-key-itself"]\n',
        ":2: role must be": f'[[tenant]]\nrole = "root"\nname = "a"\nkeys = ["{d}"]\n',
        ":4: rate_limit": f'[[tenant]]\nname = "a"\nkeys = ["{d}"]\nrate_limit = "fast"\n',
        ":1: unknown entry": 'tenants = 1\n',
    }
    for expected, text in bad.items():
        with pytest.raises(KeysFileError) as e:
            read_keys_file(keys_file(tmp_path, text), TenantLimits())
        assert expected in str(e.value), (expected, str(e.value))
    with pytest.raises(KeysFileError, match="no \\[\\[tenant\\]\\]"):  # an empty file would open the service
        Tenants.from_settings([], keys_file(tmp_path, "# nobody yet\n"), TenantLimits())


def test_adain_keys_add_prints_a_key_once_and_stores_only_its_digest(tmp_path):
    path = tmp_path / "keys.toml"
    first = add_key(path, "acme")
    ops = add_key(path, "ops", admin=True)
    second = add_key(path, "acme")  # rotation: acme's second key
    text = path.read_text()
    assert first not in text and second not in text and ops not in text
    assert digest(first) in text and digest(second) in text
    tenants = Tenants.from_settings([], path, TenantLimits())
    assert tenants.resolve(first).tenant == tenants.resolve(second).tenant == "acme"
    assert tenants.resolve(ops).is_admin and not tenants.resolve(first).is_admin
    with pytest.raises(KeysFileError, match="already has 2 keys"):
        add_key(path, "acme")
    assert path.stat().st_mode & 0o077 == 0
