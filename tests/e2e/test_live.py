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
from helpers import psnr
from serverproc import run_server
from waiting import HANG


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


def accounted(sent: int):
    """True once a status message says every one of ``sent`` frames was answered or dropped."""
    return lambda images, text: (text["type"] == "status" and text["frames_received"] == sent
                                 and text["frames_answered"] + text["frames_dropped"] == sent)


def drain(ws, until):
    """(images, texts) received until ``until(images, last text)`` holds for a text, or an image
    arrives when ``until`` is a number of images; HANG is the ceiling."""
    images, texts = [], []
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline:
        m = ws.recv(timeout=HANG)
        if isinstance(m, bytes):
            images.append(Image.open(io.BytesIO(m)))
            if isinstance(until, int) and len(images) >= until:
                return images, texts
        else:
            texts.append(json.loads(m))
            if callable(until) and until(images, texts[-1]):
                return images, texts
    raise AssertionError(f"waited {HANG:g} s for the stream: a hang")


def of_type(kind: str):
    return lambda images, text: text["type"] == kind


def test_sixty_frames_latest_wins_sizes_bad_frame_and_new_settings(server):
    with connect(ws_url(server), max_size=2 ** 22) as ws:
        ws.send(json.dumps({"style_id": preset(server), "alpha": 0.8, "content_size": 96}))
        assert json.loads(ws.recv(timeout=HANG))["type"] == "ready"
        for frame in FRAMES:  # faster than the model: most must be dropped, not queued
            ws.send(frame)
        images, texts = drain(ws, accounted(len(FRAMES)))
        assert 0 < len(images) < len(FRAMES)  # answers <= frames sent
        assert all(im.format == "JPEG" and im.size == (128, 96) for im in images)
        # every frame accounted for: answered or dropped for a newer one, none kept back
        assert texts[-1]["frames_answered"] == len(images)
        ws.send(b"not a jpeg at all")  # alone, so no newer frame replaces it
        _, texts = drain(ws, of_type("error"))
        assert "frame 61" in texts[-1]["detail"], texts  # named
        # the stream goes on, and new settings apply to the next frames
        ws.send(json.dumps({"style_id": [preset(server)], "content_size": 64, "stabilize": False, "matching": "efdm"}))
        drain(ws, of_type("ready"))
        ws.send(FRAMES[0])
        images, _ = drain(ws, 1)
        assert [im.size for im in images] == [(85, 64)]


def test_no_backlog_the_last_frame_is_answered_and_stale_ones_dropped(server):
    """Sent faster than they can be drawn, frames never queue up: a frame waiting when a newer one
    comes is dropped, and the last frame sent is the last one answered."""
    last = jpeg(clips.pan(320, 240, 1)[0][::-1].copy())  # unlike every frame of the pan
    with connect(ws_url(server), max_size=2 ** 22) as ws:
        ws.send(json.dumps({"style_id": preset(server), "content_size": 96, "stabilize": False}))
        ws.recv(timeout=HANG)
        ws.send(last)
        alone = drain(ws, 1)[0][0]  # the answer to ``last`` on its own
        for frame in FRAMES[:40]:
            ws.send(frame)
            time.sleep(0.002)  # above the 1000 frames/s cap, so none is dropped as too fast
        drain(ws, lambda images, text: text["type"] == "status" and text["frames_received"] == 41)
        ws.send(last)  # after the server has seen all 40: not too fast either
        images, texts = drain(ws, accounted(42))
        print(f"\n40 frames and the last: {len(images)} answered, {texts[-1]['frames_dropped']} dropped")
        assert texts[-1]["frames_dropped"] > 0 and len(images) < 41
        assert psnr(images[-1].convert("RGB"), alone.convert("RGB")) > 40


def test_limits_settings_and_idle(server_env, tmp_path):
    with run_server(tmp_path, **server_env, ADAIN_MAX_STREAMS="1", ADAIN_API_KEYS="k1",
                    ADAIN_STREAM_IDLE_SECONDS="2") as s:
        url = ws_url(s)
        with s.client(headers={"X-API-Key": "k1"}) as c:
            style = c.get("/styles").json()["styles"][0]["id"]
        with connect(url) as ws:  # the key in the first message (a browser cannot send headers)
            ws.send(json.dumps({"style_id": "no-such-style", "api_key": "k1"}))
            assert "not registered" in json.loads(ws.recv(timeout=HANG))["detail"]
            ws.send(json.dumps({"style_id": style, "alpha": 3}))
            assert "alpha" in json.loads(ws.recv(timeout=HANG))["detail"]
            ws.send("{not json")
            assert "not JSON" in json.loads(ws.recv(timeout=HANG))["detail"]
            ws.send(json.dumps({"style_id": style, "content_size": 5000}))
            assert "too large" in json.loads(ws.recv(timeout=HANG))["detail"]
            with connect(url) as second:  # one stream at a time here
                assert "live streams are open" in json.loads(second.recv(timeout=HANG))["detail"]
                with pytest.raises(ConnectionClosed) as closed:
                    second.recv(timeout=HANG)
                assert closed.value.rcvd.code == 1013
            ws.send(json.dumps({"style_id": style, "content_size": 64}))
            assert json.loads(ws.recv(timeout=HANG))["type"] == "ready"
            ws.send(FRAMES[0])
            assert isinstance(next(m for m in iter(lambda: ws.recv(timeout=HANG), None) if isinstance(m, bytes)), bytes)
            with pytest.raises(ConnectionClosed) as closed:  # then silence: closed after the idle time
                while True:
                    ws.recv(timeout=HANG)
            assert closed.value.rcvd.code == 1001
        with connect(url) as ws:  # a wrong key ends the stream
            ws.send(json.dumps({"style_id": style, "api_key": "wrong"}))
            assert "API key" in json.loads(ws.recv(timeout=HANG))["detail"]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=HANG)
            assert closed.value.rcvd.code == 1008
        with connect(url, additional_headers={"X-API-Key": "k1"}) as ws:  # or the key as a header
            ws.send(json.dumps({"style_id": style, "content_size": 64}))
            assert json.loads(ws.recv(timeout=HANG))["type"] == "ready"
        with s.client(headers={"X-API-Key": "k1"}) as c:  # the stream slot was freed by each disconnect
            assert c.get("/metrics").status_code == 200
