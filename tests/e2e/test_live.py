"""The live stream (GET /ws/stylize) against a real uvicorn, with the websockets client: 60
frames sent as fast as a camera could, latest frame wins, sizes, a bad frame, settings changed
mid-stream, limits (streams at once, API keys, idle)."""

from __future__ import annotations

import io
import json
import time

import pytest
from PIL import Image
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import clips
from serverproc import run_server


def jpeg(frame) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=85)
    return buf.getvalue()


FRAMES = [jpeg(f) for f in clips.pan(320, 240, 60)]


@pytest.fixture(scope="module")
def server(server_env, tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("live"), **server_env, ADAIN_MAX_STREAMS="2",
                    ADAIN_STREAM_MAX_FPS="1000") as s:
        yield s


def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/ws/stylize"


def preset(server) -> str:
    with server.client() as c:
        return c.get("/styles").json()["styles"][0]["id"]


def drain(ws, quiet: float = 2.0, limit: float = 30.0, want: str | None = None):
    """(images, texts, arrival times) until no image has come for ``quiet`` s (status messages
    keep coming every second) or a text of type ``want`` arrives."""
    images, texts, times = [], [], []
    start = last = time.monotonic()
    while time.monotonic() - last < quiet and time.monotonic() - start < limit:
        try:
            m = ws.recv(timeout=0.2)
        except TimeoutError:
            continue
        if isinstance(m, bytes):
            images.append(Image.open(io.BytesIO(m)))
            times.append(last := time.monotonic())
        else:
            texts.append(json.loads(m))
            if want and texts[-1]["type"] == want:
                break
    return images, texts, times


def test_sixty_frames_latest_wins_sizes_bad_frame_and_new_settings(server):
    with connect(ws_url(server), max_size=2 ** 22) as ws:
        ws.send(json.dumps({"style_id": preset(server), "alpha": 0.8, "content_size": 96}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        start = time.monotonic()
        for frame in FRAMES:  # faster than the model: most must be dropped, not queued
            ws.send(frame)
        last_sent = time.monotonic()
        images, texts, _ = drain(ws)
        assert 0 < len(images) < len(FRAMES)  # answers <= frames sent
        assert all(im.format == "JPEG" and im.size == (128, 96) for im in images)
        # every frame accounted for: answered or dropped for a newer one, none kept back
        _, later, _ = drain(ws, want="status")
        last = [t for t in later if t["type"] == "status"][-1]
        assert last["frames_received"] == len(FRAMES) and last["frames_answered"] == len(images)
        assert last["frames_answered"] + last["frames_dropped"] == len(FRAMES)
        ws.send(b"not a jpeg at all")  # alone, so no newer frame replaces it
        _, texts, _ = drain(ws, want="error")
        assert any(t["type"] == "error" and "frame 61" in t["detail"] for t in texts), texts  # named
        # the stream goes on, and new settings apply to the next frames
        ws.send(json.dumps({"style_id": [preset(server)], "content_size": 64, "stabilize": False}))
        assert any(t["type"] == "ready" for t in drain(ws, want="ready")[1])
        ws.send(FRAMES[0])
        images, _, _ = drain(ws)
        assert [im.size for im in images] == [(85, 64)]
        print(f"\n60 frames in {last_sent - start:.2f} s; {last}")


def test_no_backlog_the_last_frame_is_answered_right_after_it(server):
    """Sent faster than they can be drawn, frames never queue up: the answer to the last frame
    comes within about two frame times (the one being drawn, then it), not after a backlog."""
    with connect(ws_url(server), max_size=2 ** 22) as ws:
        ws.send(json.dumps({"style_id": preset(server), "content_size": 96, "stabilize": False}))
        ws.recv(timeout=30)
        once = time.monotonic()
        ws.send(FRAMES[0])
        alone = drain(ws, quiet=1.0)[2][0] - once  # one frame's round trip
        for frame in FRAMES[:40]:
            ws.send(frame)
            time.sleep(0.002)
        sent = time.monotonic()
        images, _, times = drain(ws, quiet=2.0)
        last = times[-1] - sent
        print(f"\none frame alone {alone * 1000:.0f} ms; the last of 40 answered {last * 1000:.0f} ms after it was sent")
        assert len(images) < 40 and last <= 3 * alone + 0.5


def test_limits_settings_and_idle(server_env, tmp_path):
    with run_server(tmp_path, **server_env, ADAIN_MAX_STREAMS="1", ADAIN_API_KEYS="k1",
                    ADAIN_STREAM_IDLE_SECONDS="2") as s:
        url = ws_url(s)
        with s.client(headers={"X-API-Key": "k1"}) as c:
            style = c.get("/styles").json()["styles"][0]["id"]
        with connect(url) as ws:  # the key in the first message (a browser cannot send headers)
            ws.send(json.dumps({"style_id": "no-such-style", "api_key": "k1"}))
            assert "not registered" in json.loads(ws.recv(timeout=10))["detail"]
            ws.send(json.dumps({"style_id": style, "alpha": 3}))
            assert "alpha" in json.loads(ws.recv(timeout=10))["detail"]
            ws.send("{not json")
            assert "not JSON" in json.loads(ws.recv(timeout=10))["detail"]
            ws.send(json.dumps({"style_id": style, "content_size": 5000}))
            assert "too large" in json.loads(ws.recv(timeout=10))["detail"]
            with connect(url) as second:  # one stream at a time here
                assert "live streams are open" in json.loads(second.recv(timeout=10))["detail"]
                with pytest.raises(ConnectionClosed) as closed:
                    second.recv(timeout=10)
                assert closed.value.rcvd.code == 1013
            ws.send(json.dumps({"style_id": style, "content_size": 64}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            ws.send(FRAMES[0])
            assert isinstance(next(m for m in iter(lambda: ws.recv(timeout=10), None) if isinstance(m, bytes)), bytes)
            with pytest.raises(ConnectionClosed) as closed:  # then silence: closed after the idle time
                while True:
                    ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1001
        with connect(url) as ws:  # a wrong key ends the stream
            ws.send(json.dumps({"style_id": style, "api_key": "wrong"}))
            assert "API key" in json.loads(ws.recv(timeout=10))["detail"]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1008
        with connect(url, additional_headers={"X-API-Key": "k1"}) as ws:  # or the key as a header
            ws.send(json.dumps({"style_id": style, "content_size": 64}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        with s.client(headers={"X-API-Key": "k1"}) as c:  # the stream slot was freed by each disconnect
            assert c.get("/metrics").status_code == 200
