"""Tenants with real parts: two uvicorn replicas on a real redis-server behind a real nginx. One
tenant cannot see, use or delete another's styles or video jobs on either replica; the admin sees
all; a rate limit holds across the replicas; Redis going away turns into no 500s; keys never
reach a log; a bad keys file stops the start-up naming its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import clips
from helpers import files, noise_image, png
from nginxproc import NGINX, run_nginx
from redisproc import run_redis
from serverproc import REPO, run_server
from service.tenants import digest
from waiting import HANG, wait_for

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")
CONTENT = png(noise_image(40, 32, seed=1))
STYLE = png(noise_image(32, 32, seed=2))
KEYS = {name: f"{name}-secret-key-0123456789" for name in ("acme", "beta", "ops", "limited")}
KEYS_FILE = "\n".join(f'''
[[tenant]]
name = "{name}"
keys = ["{digest(key)}"]
role = "{'admin' if name == 'ops' else 'user'}"
{'rate_limit = "10/minute"' if name == "limited" else ""}''' for name, key in KEYS.items())


def h(name: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[name]}


def register(c: httpx.Client, who: str) -> str:
    r = c.post("/styles", files={"style": ("s.png", STYLE, "image/png")}, headers=h(who))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def video(c: httpx.Client, who: str, clip: bytes) -> str:
    r = c.post("/videos", files={"video": ("c.mp4", clip, "video/mp4"), "style": ("s.png", STYLE, "image/png")},
               headers=h(who))
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_tenants_are_kept_apart_on_every_replica_and_limits_hold_across_them(server_env, tmp_path):
    (tmp_path / "keys.toml").write_text(KEYS_FILE)
    clip = clips.write(tmp_path / "c.mp4", clips.pan(64, 48, 6), fps=6).read_bytes()
    with run_redis(tmp_path / "redis") as redis:
        env = {**server_env, "ADAIN_REDIS_URL": redis.url, "ADAIN_KEYS_FILE": str(tmp_path / "keys.toml"),
               "ADAIN_VIDEO_FILES_DIR": str(tmp_path / "shared-videos"), "ADAIN_DEFAULT_STYLE_SIZE": "32"}
        with run_server(tmp_path / "a", log_level="debug", **env) as a, \
                run_server(tmp_path / "b", log_level="debug", **env) as b, \
                run_nginx(tmp_path / "nginx", f"{a.url[7:]}; server {b.url[7:]}") as web, \
                httpx.Client(base_url=web, timeout=HANG) as c:
            style, job = register(c, "acme"), video(c, "acme", clip)
            for replica in (a, b):
                with replica.client() as rc:
                    assert rc.get(f"/styles/{style}", headers=h("acme")).status_code == 200
                    assert [s["id"] for s in rc.get("/styles", headers=h("beta")).json()["styles"]
                            if s["kind"] == "uploaded"] == []
                    assert rc.get(f"/styles/{style}", headers=h("beta")).status_code == 404
                    used = rc.post("/stylize", files=files(CONTENT), data={"style_id": style}, headers=h("beta"))
                    assert used.status_code == 400 and "not registered" in used.json()["detail"]
                    assert rc.delete(f"/styles/{style}", headers=h("beta")).status_code == 404
                    for path in (f"/videos/{job}", f"/videos/{job}/result"):
                        assert rc.get(path, headers=h("beta")).status_code == 404
                    assert rc.delete(f"/videos/{job}", headers=h("beta")).status_code == 404
                    assert style in [s["id"] for s in rc.get("/styles", headers=h("ops")).json()["styles"]]
                    assert rc.get(f"/videos/{job}", headers=h("ops")).status_code == 200
            wait_for(lambda: c.get(f"/videos/{job}", headers=h("acme")).json()["state"] == "done", "the video job",
                     every=0.1)
            assert c.get(f"/videos/{job}/result", headers=h("acme")).status_code == 200
            assert c.get(f"/videos/{job}/result", headers=h("beta")).status_code == 404
            ok = c.post("/stylize", files=files(CONTENT), data={"style_id": style}, headers=h("acme"))
            assert ok.status_code == 200 and ok.headers["x-request-id"]
            assert c.delete(f"/styles/{style}", headers=h("ops")).status_code == 204  # the admin deletes anything
            assert c.get(f"/styles/{style}", headers=h("acme")).status_code == 404

            # 10/minute for "limited", held in Redis: 25 requests round-robin over both replicas
            codes = [c.get("/styles", headers=h("limited")).status_code for _ in range(25)]
            assert codes.count(200) == 10 and codes.count(429) == 15, codes
            assert all(r.metric('adain_tenant_requests_total{status="200",tenant="limited"}') >= 3 for r in (a, b))

            redis.stop()  # no 500s: uploads still work (rates fail open), ids answer 503
            for _ in range(4):
                up = c.post("/stylize", files=files(CONTENT, STYLE), headers=h("limited"))
                assert up.status_code == 200, up.text
            for r in (c.get("/styles", headers=h("acme")), c.get(f"/videos/{job}", headers=h("acme")),
                      c.post("/stylize", files=files(CONTENT), data={"style_id": "x"}, headers=h("acme"))):
                assert r.status_code == 503 and r.headers["retry-after"], r.text
            assert a.metric("adain_rate_limit_errors_total") + b.metric("adain_rate_limit_errors_total") >= 1
        logs = a.log.read_text() + b.log.read_text()
    assert "Traceback" not in logs and 'HTTP/1.1" 500' not in logs
    assert "acme" in logs  # the tenant is named in the lines of its requests ...
    for key in KEYS.values():  # ... its key in none
        assert key not in logs


def test_a_bad_keys_file_stops_the_start_naming_the_line(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(f'[[tenant]]\nname = "a"\nkeys = ["{digest("k")}"]\nshade = "blue"\n')
    run = subprocess.run([sys.executable, "-m", "service", "--keys-file", str(path), "--port", "0"], cwd=REPO,
                         capture_output=True, text=True, timeout=HANG)
    assert run.returncode != 0 and f"{path}:4: unknown field 'shade'" in run.stderr
