"""Registered styles as data, with real parts: a real redis-server, two real uvicorn replicas
behind a real nginx (round robin), restarts, kill -9, Redis going away and coming back."""

from __future__ import annotations

import io
import socket

import httpx
import pytest
from PIL import Image

from helpers import files, noise_image, png
from nginxproc import NGINX, run_nginx
from redisproc import run_redis
from serverproc import run_server
from waiting import HANG, wait_for

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(NGINX).exists(), reason="nginx is not installed")
CONTENT = png(noise_image(40, 32, seed=1))
STYLE = png(noise_image(32, 32, seed=2))


def register(c: httpx.Client, style: bytes = STYLE, name: str = "mine") -> str:
    r = c.post("/styles", files={"style": ("s.png", style, "image/png")}, data={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def by_id(c: httpx.Client, style_id: str) -> httpx.Response:
    return c.post("/stylize", files=files(CONTENT), data={"style_id": style_id})


def ok_image(r: httpx.Response) -> bool:
    return r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (40, 32)


def served(server, status: str = "200") -> float:
    return server.metric(f'adain_requests_total{{method="POST",route="/stylize",status="{status}"}}')


@pytest.fixture
def env(server_env):
    return {**server_env, "ADAIN_DEFAULT_STYLE_SIZE": "32", "ADAIN_STYLE_CACHE_SIZE": "2"}


def test_two_replicas_behind_nginx_share_styles_across_restarts(env, tmp_path):
    with run_redis(tmp_path / "redis") as redis:
        shared = {**env, "ADAIN_REDIS_URL": redis.url}
        with run_server(tmp_path / "a", **shared) as a, run_server(tmp_path / "b", **shared) as b, \
                run_nginx(tmp_path / "nginx", f"{a.url[7:]}; server {b.url[7:]}") as web:
            with httpx.Client(base_url=web, timeout=HANG) as c:
                kept, gone = register(c), register(c, png(noise_image(32, 32, seed=3)), "to delete")
                assert all(ok_image(by_id(c, kept)) for _ in range(20))
                assert served(a) >= 5 and served(b) >= 5  # both replicas answered ids registered once
                listed = [s["id"] for s in c.get("/styles").json()["styles"]]
                assert kept in listed and gone in listed
                assert c.delete(f"/styles/{gone}").status_code == 204
            for replica in (a, b):  # gone on both, straight away
                with replica.client() as rc:
                    assert rc.get(f"/styles/{gone}").status_code == 404
                    assert by_id(rc, gone).status_code == 400
                    assert rc.get(f"/styles/{kept}").status_code == 200
            # 40 other styles sent inline through a cache of 2 cannot evict a registered one
            with a.client() as ac:
                for i in range(40):
                    assert ac.post("/stylize", files=files(CONTENT, png(noise_image(16, 16, seed=100 + i)))
                                   ).status_code == 200
                assert a.metric("adain_style_cache_entries") == 2 and ok_image(by_id(ac, kept))
        # both replicas restarted (a redeploy): the style is still there
        with run_server(tmp_path / "a2", **shared) as a, run_server(tmp_path / "b2", **shared) as b:
            for replica in (a, b):
                with replica.client() as rc:
                    assert ok_image(by_id(rc, kept)) and rc.get(f"/styles/{gone}").status_code == 404


def test_redis_going_away_is_503_for_ids_only_and_coming_back_needs_no_restart(env, tmp_path):
    with run_redis(tmp_path / "redis") as redis, \
            run_server(tmp_path / "a", **{**env, "ADAIN_REDIS_URL": redis.url}) as a, a.client() as c:
        style_id = register(c)
        assert ok_image(by_id(c, style_id))
        redis.stop()
        r = by_id(c, style_id)
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0 and "store" in r.json()["detail"]
        assert ok_image(c.post("/stylize", files=files(CONTENT, STYLE)))  # uploads keep working
        assert c.post("/styles", files={"style": ("s.png", STYLE, "image/png")}).status_code == 503
        assert c.get("/styles").status_code == 503
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["store"] == "redis" and ready.json()["store_ok"] is False
        assert a.metric("adain_store_errors_total") > 0
        redis.start()  # the same port and AOF folder: what was written is back
        assert ok_image(by_id(c, style_id))
        assert c.get("/readyz").json()["store_ok"] is True
    assert "Traceback" not in a.log.read_text()


def test_the_embedded_store_survives_kill_9(env, tmp_path):
    state = {**env, "ADAIN_STATE_DIR": str(tmp_path / "state")}
    with run_server(tmp_path / "a", **state) as a, a.client() as c:
        style_id = register(c)
        a.proc.kill()  # SIGKILL right after the 201: no shutdown code runs
        a.proc.wait(10)
    with run_server(tmp_path / "b", **state) as b, b.client() as c:
        assert ok_image(by_id(c, style_id))
        assert c.get("/readyz").json()["store"] == "sqlite"


def test_video_jobs_through_nginx_any_replica_answers_and_a_dead_replicas_job_goes_on(env, tmp_path):
    """Two replicas on Redis, each with a work folder of its own: a job posted through nginx is
    followed, fetched (with Range) and deleted on either replica; a replica killed mid-job leaves
    a job the other goes on rendering (the lapsed segment taken over), not a failed one."""

    import clips

    short = clips.write(tmp_path / "short.mp4", clips.pan(64, 48, 8), fps=8, audio=True).read_bytes()
    long = clips.write(tmp_path / "long.mp4", clips.pan(96, 72, 400), fps=24).read_bytes()

    def post(c: httpx.Client, clip: bytes) -> dict:
        r = c.post("/videos", files={"video": ("c.mp4", clip, "video/mp4"), "style": ("s.png", STYLE, "image/png")})
        assert r.status_code == 202, r.text
        return r.json()

    def state(c: httpx.Client, job_id: str, until: tuple[str, ...]) -> dict:
        def met() -> dict | None:
            s = c.get(f"/videos/{job_id}").json()
            return s if s["state"] in until else None

        return wait_for(met, f"video job {job_id} {until}", every=0.1)

    with run_redis(tmp_path / "redis") as redis:
        shared = {**env, "ADAIN_REDIS_URL": redis.url, "ADAIN_VIDEO_STALE_SECONDS": "3",
                  "ADAIN_VIDEO_FILES_DIR": str(tmp_path / "shared-videos")}  # the volume every replica mounts
        with run_server(tmp_path / "a", **shared) as a, run_server(tmp_path / "b", **shared) as b, \
                run_nginx(tmp_path / "nginx", f"{a.url[7:]}; server {b.url[7:]}") as web, \
                httpx.Client(base_url=web, timeout=HANG) as c, a.client() as ac, b.client() as bc:
            job = post(c, short)
            assert state(ac, job["id"], ("done",))["state"] == "done"
            assert state(bc, job["id"], ("done",))["frames_done"] == 8
            whole = bc.get(job["result_url"]).content
            assert whole == ac.get(job["result_url"]).content == c.get(job["result_url"]).content
            part = c.get(job["result_url"], headers={"Range": "bytes=0-99"})
            assert part.status_code == 206 and part.content == whole[:100]  # Range through nginx
            assert bc.delete(f"/videos/{job['id']}").status_code == 204
            assert ac.get(f"/videos/{job['id']}").status_code == 404
            assert not list((tmp_path / "shared-videos").glob("*"))

            running = post(ac, long)
            assert state(bc, running["id"], ("running",))["state"] == "running"
            wait_for(lambda: bc.get(f"/videos/{running['id']}").json()["frames_done"], "the first frames")
            a.proc.kill()  # SIGKILL mid-job: no shutdown code runs
            a.proc.wait(HANG)
            survivor = f"{socket.gethostname()}:{b.proc.pid}"

            def taken_over() -> dict | None:
                s = bc.get(f"/videos/{running['id']}").json()
                return s if survivor in s["rendered_by"] else None

            s = wait_for(taken_over, "the survivor to render a segment", every=0.2)
            assert s["state"] == "running" and s["rendered_by"].get(survivor, 0) >= 1, s
            assert bc.delete(f"/videos/{running['id']}").status_code == 204


def test_two_replicas_follow_a_new_default_decoder_without_a_restart(env, tmp_path):
    """The model store shared by two replicas (a volume): a version imported and made the default
    with the CLI is what both answer with next; the trainer's published version reaches users so."""
    from model.decoder import random_decoder, save_decoder
    from service.cli import main as adain

    models = tmp_path / "models"
    shared = {**env, "ADAIN_MODELS_DIR": str(models)}
    with run_server(tmp_path / "a", **shared) as a, run_server(tmp_path / "b", **shared) as b:
        def versions() -> set[str]:
            out = set()
            for server in (a, b):
                with server.client() as c:
                    r = c.post("/stylize", files=files(CONTENT, STYLE))
                    assert ok_image(r), r.text
                    out.add(r.headers["x-model-version"])
            return out

        assert versions() == {"v7"}
        weights = save_decoder(random_decoder(seed=5), tmp_path / "trained", "safetensors")
        assert adain(["models", "import", str(weights), "--name", "trained", "--dir", str(models)]) == 0
        assert versions() == {"v7"}  # imported is not the default
        assert adain(["models", "default", "trained", "--dir", str(models)]) == 0
        assert versions() == {"trained"}
        with a.client() as c:
            assert [v["name"] for v in c.get("/models").json()["versions"]] == ["v7", "trained"]
