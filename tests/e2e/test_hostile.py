"""One caller cannot sink a shared replica: every size a client controls is bounded before work is
done, ids of any other shape answer as unknown ones, video bytes stay out of Redis. Two real
replicas on a real redis-server and one shared video folder; after each case the replica still
serves (docs/reliability.md lists the cases)."""

from __future__ import annotations

import io
import json
import socket
from contextlib import ExitStack
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import httpx
import pytest
import redis
from PIL import Image
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import clips
from helpers import CONTENT, STYLE_A, files, noise_image, png
from redisproc import run_redis
from serverproc import Server, run_server
from waiting import HANG, wait_for

KEY, OTHER = "hostile-key-0123456789", "second-key-0123456789"
MB = 1024 * 1024
TINY = png(noise_image(16, 16, seed=7))


@pytest.fixture(scope="module")
def replicas(server_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    with run_redis(tmp / "redis") as store:
        env = {**server_env, "ADAIN_REDIS_URL": store.url, "ADAIN_VIDEO_FILES_DIR": str(tmp / "videos"),
               "ADAIN_API_KEYS": f"{KEY},{OTHER}", "ADAIN_MAX_ANONYMOUS_STREAMS": "3",
               "ADAIN_STREAM_HELLO_SECONDS": "2", "ADAIN_MAX_BUFFERED_BYTES": str(60 * MB),
               "ADAIN_MAX_VIDEO_FRAMES": "100", "ADAIN_MAX_VIDEO_JOBS_PER_TENANT": "1",
               "ADAIN_VIDEO_SEGMENT_FRAMES": "8"}
        with run_server(tmp / "a", **env) as a, run_server(tmp / "b", **env) as b:
            yield a, b, store, tmp / "videos"


@pytest.fixture(scope="module")
def server(replicas) -> Server:
    return replicas[0]


def client(server: Server, key: str = KEY) -> httpx.Client:
    return server.client(headers={"X-API-Key": key})


def still_serving(server: Server) -> None:
    with client(server) as c:
        r = c.post("/stylize", files=files(CONTENT, STYLE_A))
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (96, 64)
    assert server.proc.poll() is None


@cache
def mp4(name: str, w: int, h: int, n: int, fps: int) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        return clips.write(Path(d) / name, clips.pan(w, h, n), fps=fps).read_bytes()


def video_form(clip: bytes, style: bytes = STYLE_A, **data) -> dict:
    return {"files": [("video", ("c.mp4", clip, "video/mp4")), ("style", ("s.png", style, "image/png"))],
            "data": data}


@pytest.fixture(scope="module")
def done_job(server) -> str:
    """One finished video job, for the cases that need one."""
    with client(server) as c:
        r = c.post("/videos", **video_form(mp4("short.mp4", 64, 48, 16, 12)))
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        wait_for(lambda: c.get(f"/videos/{job}").json()["state"] == "done", "the video job", every=0.1)
    return job


def test_a_style_cannot_be_upscaled_past_the_style_limit(server):
    """A 16x16 style at style_size 8192 would be 64 MP through VGG: refused from its header."""
    with client(server) as c:
        answers = [c.post("/styles", files={"style": ("s.png", TINY, "image/png")}, data={"style_size": "8192"}),
                   c.post("/stylize", files=files(CONTENT, TINY), data={"style_size": "8192"}),
                   c.post("/videos", **video_form(mp4("short.mp4", 64, 48, 16, 12), TINY, style_size="8192"))]
    for r in answers:
        assert r.status_code == 413 and "ADAIN_MAX_STYLE_PIXELS" in r.json()["detail"], r.text
    still_serving(server)


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/ws/stylize"


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    return buf.getvalue()


def test_a_wide_stream_frame_is_refused_not_upscaled(server):
    """4000x16 at content_size 512 would be 128000x512: the stream says so and goes on."""
    with connect(ws_url(server), additional_headers={"X-API-Key": KEY}, max_size=2 ** 22) as ws:
        ws.send(json.dumps({"style_id": "ocean", "content_size": 512}))
        assert json.loads(ws.recv(timeout=HANG))["type"] == "ready"
        ws.send(jpeg(Image.new("RGB", (4000, 16), (200, 30, 30))))
        text = next(m for m in iter(lambda: json.loads(ws.recv(timeout=HANG)), None) if m["type"] == "error")
        assert "frame 1" in text["detail"] and "pixels" in text["detail"], text
        ws.send(json.dumps({"style_id": "ocean", "content_size": 32}))
        # after the next status message: a frame right after the first would be dropped as too fast
        next(m for m in iter(lambda: json.loads(ws.recv(timeout=HANG)), None) if m["type"] == "status")
        ws.send(jpeg(noise_image(48, 32, seed=3)))
        answer = next(m for m in iter(lambda: ws.recv(timeout=HANG), None) if isinstance(m, bytes))
        assert Image.open(io.BytesIO(answer)).size == (48, 32)


def test_sockets_that_never_say_who_they_are_are_capped_and_closed(server):
    with ExitStack() as opened:
        silent = [opened.enter_context(connect(ws_url(server))) for _ in range(3)]  # no key, nothing sent
        with connect(ws_url(server)) as fourth:
            assert "API key" in json.loads(fourth.recv(timeout=HANG))["detail"]
            with pytest.raises(ConnectionClosed) as closed:
                fourth.recv(timeout=HANG)
            assert closed.value.rcvd.code == 1013
        for ws in silent:  # each closed after ADAIN_STREAM_HELLO_SECONDS, however long it would wait
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=HANG)
            assert closed.value.rcvd.code == 1008
    with connect(ws_url(server), additional_headers={"X-API-Key": KEY}) as ws:  # places free again
        ws.send(json.dumps({"style_id": "ocean", "content_size": 32}))
        assert json.loads(ws.recv(timeout=HANG))["type"] == "ready"


def head(length: int) -> bytes:
    return (f"POST /stylize HTTP/1.1\r\nHost: t\r\nX-API-Key: {KEY}\r\nContent-Type: multipart/form-data; "
            f"boundary=b\r\nContent-Length: {length}\r\n\r\n").encode()


def test_uploads_in_flight_share_one_memory_budget(server):
    """Two 40 MB bodies against a 60 MB budget: the second is refused (503 + Retry-After) before a
    byte of it is read, while the first is still arriving."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=HANG) as first:
        first.sendall(head(40 * MB) + b"--b\r\nContent-Disposition: form-data; name=\"content\"; filename=\"x\"\r\n\r\n"
                      + b"\0" * MB)
        wait_for(lambda: server.metric("adain_buffered_bytes") >= 40 * MB, "the first upload to be charged")
        with socket.create_connection(("127.0.0.1", server.port), timeout=HANG) as second:
            second.sendall(head(40 * MB))
            reply = b"".join(iter(lambda: second.recv(65536), b""))  # until the server closes
        assert reply.startswith(b"HTTP/1.1 503") and b"retry-after" in reply.lower(), reply[:300]
        assert b"ADAIN_MAX_BUFFERED_BYTES" in reply
    wait_for(lambda: server.metric("adain_buffered_bytes") == 0, "the abandoned upload's charge to be given back")
    still_serving(server)


def test_a_video_of_too_many_frames_or_too_fast_is_refused_and_leaves_nothing(replicas):
    server, _, _, folder = replicas
    with client(server) as c:
        fast = c.post("/videos", **video_form(mp4("fast.mp4", 32, 32, 48, 240)))
        many = c.post("/videos", **video_form(mp4("many.mp4", 32, 32, 120, 24)))
    assert fast.status_code == 413 and "frames/s" in fast.json()["detail"], fast.text
    assert many.status_code == 413 and "120 frames" in many.json()["detail"], many.text
    assert not list(folder.glob("upload-*"))
    still_serving(server)


def test_video_bytes_live_in_the_shared_folder_never_in_redis(replicas, done_job):
    server, other, store, folder = replicas
    job = done_job
    with client(other) as c:  # the other replica serves the result from the shared folder
        r = c.get(f"/videos/{job}/result")
    assert r.status_code == 200 and r.content[4:8] == b"ftyp"
    assert (folder / f"{job}.mp4").stat().st_size == len(r.content)
    db = redis.Redis.from_url(store.url)
    sizes = {k: db.memory_usage(k) for k in db.scan_iter("*")}
    assert max(sizes.values()) < 16_384, sizes


def test_ids_of_any_other_shape_answer_as_unknown_ones(server, done_job):
    job = done_job
    unknown = "A" * 22
    with client(server) as c:
        expected = c.get(f"/videos/{unknown}").json()["detail"].replace(repr(unknown), "ID")
        for bad in (f"{job}:units", f"{job}:file:track", f"{job}:files", f"{job}:mp4", f"{job}*", "x" * 300):
            for r in (c.get(f"/videos/{bad}"), c.get(f"/videos/{bad}/result"), c.delete(f"/videos/{bad}")):
                assert r.status_code == 404, (bad, r.status_code, r.text)
                assert r.json()["detail"].replace(repr(bad), "ID") == expected
        style = c.post("/styles", files={"style": ("s.png", STYLE_A, "image/png")}).json()["id"]
        for bad in (f"{style}:x", "*", f"{style}:" + "x" * 200):
            assert c.get(f"/styles/{bad}").status_code == 404
            assert c.post("/stylize", files=files(CONTENT), data={"style_id": bad}).status_code == 400
        assert c.get(f"/videos/{job}").status_code == 200  # the real one is still there
    still_serving(server)


def test_a_range_of_thousands_of_digits_is_not_a_500(server, done_job):
    job = done_job
    huge = "9" * 5000
    with client(server) as c:
        size = len(c.get(f"/videos/{job}/result").content)
        past = c.get(f"/videos/{job}/result", headers={"Range": f"bytes={huge}-"})
        tail = c.get(f"/videos/{job}/result", headers={"Range": f"bytes=-{huge}"})
        open_end = c.get(f"/videos/{job}/result", headers={"Range": f"bytes=0-{huge}"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    assert tail.status_code == 206 and len(tail.content) == size
    assert open_end.status_code == 206 and len(open_end.content) == size
    still_serving(server)


def test_several_video_parts_are_refused_and_leave_nothing(replicas):
    server, _, _, folder = replicas
    clip = mp4("short.mp4", 64, 48, 16, 12)
    with client(server) as c:
        r = c.post("/videos", files=[("video", ("a.mp4", clip, "video/mp4")), ("video", ("b.mp4", clip, "video/mp4")),
                                     ("style", ("s.png", STYLE_A, "image/png"))])
    assert r.status_code == 400 and "one video" in r.json()["detail"], r.text
    assert not list(folder.glob("upload-*"))
    still_serving(server)


def test_a_tenants_video_limit_holds_when_both_replicas_accept_at_once(replicas):
    """Limit 1, six submissions of one tenant at once over both replicas: exactly one job."""
    a, b, _, _ = replicas
    clip = mp4("short.mp4", 64, 48, 16, 12)

    def submit(i: int) -> httpx.Response:
        with client((a, b)[i % 2], OTHER) as c:
            return c.post("/videos", **video_form(clip))

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(submit, range(6)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [202, 429, 429, 429, 429, 429], [r.text for r in answers]
    with client(a, OTHER) as c:
        job = next(r.json()["id"] for r in answers if r.status_code == 202)
        assert c.delete(f"/videos/{job}").status_code == 204


def test_a_tiff_of_thousands_of_pages_is_read_at_its_first_page(server):
    """(tests/model/test_images.py counts the pages looked at: only the first.)"""
    first = Image.new("RGB", (64, 48), (90, 120, 200))
    buf = io.BytesIO()
    first.save(buf, "TIFF", save_all=True, append_images=[Image.new("L", (1, 1))] * 3000)
    with client(server) as c:
        r = c.post("/stylize", files=[("content", ("pages.tif", buf.getvalue(), "image/tiff")),
                                      ("style", ("s.png", STYLE_A, "image/png"))])
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (64, 48)
    still_serving(server)


def test_a_full_redis_answers_507_and_the_replica_serves_on(server_env, tmp_path):
    """Redis at maxmemory with noeviction (as deploy/ runs it) refuses writes: a registration
    answers 507, reads and inline styles go on, nothing crashes."""
    with run_redis(tmp_path / "redis", "--maxmemory-policy", "noeviction") as store:
        env = {**server_env, "ADAIN_REDIS_URL": store.url, "ADAIN_API_KEYS": KEY}
        with run_server(tmp_path / "a", **env) as s, client(s) as c:
            db = redis.Redis.from_url(store.url)
            db.mset({f"filler:{i}": b"x" * 1024 for i in range(2000)})
            db.config_set("maxmemory", db.info("memory")["used_memory"] - 512 * 1024)  # well past the line
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                db.set("one-more", b"x")
            r = c.post("/styles", files={"style": ("s.png", STYLE_A, "image/png")})
            assert r.status_code == 507 and "out of memory" in r.json()["detail"], r.text
            assert c.get("/styles").status_code == 200
            still_serving(s)
