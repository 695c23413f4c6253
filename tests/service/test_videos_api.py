"""Video jobs over HTTP: states, result with Range, any replica answers, cancel, expiry, a dead
worker, shutdown, limits and bad input (4xx, nothing left on disk), fair sharing with /stylize."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import threading
import time
from functools import cache
from pathlib import Path

import av
import pytest

import clips
from helpers import STYLE_A, files, noise_image, png
from service.tenants import LOCAL, Caller, TenantLimits
from waiting import wait_for


@cache
def clip(w: int = 64, h: int = 48, n: int = 8, audio: bool = False) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return clips.write(Path(d) / "c.mp4", clips.pan(w, h, n), fps=12, audio=audio).read_bytes()


def submit(client, video: bytes, style: bytes = STYLE_A, **data):
    return client.post("/videos", files={"video": ("clip.mp4", video, "video/mp4"),
                                         "style": ("s.png", style, "image/png")}, data=data)


def wait(client, job_id: str, until=lambda s: s["state"] not in ("queued", "running"),
         headers: dict | None = None) -> dict:
    """The job's status once ``until`` holds (by default: it ended)."""
    def status() -> dict | None:
        s = client.get(f"/videos/{job_id}", headers=headers).json()
        return s if until(s) else None

    return wait_for(status, f"video job {job_id}")


def work_files(client) -> list[str]:
    folder = client.app.state.engine.videos.store.folder
    return sorted(p.name for p in folder.glob("*")) if folder.exists() else []


def decode(data: bytes) -> tuple[int, float, tuple[int, int], set[str]]:
    with av.open(io.BytesIO(data)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
        return n, float(v.average_rate), (v.width, v.height), {s.type for s in c.streams}


def test_a_job_runs_to_an_mp4_of_the_clips_frames_rate_size_and_audio(client):
    r = submit(client, clip(audio=True), alpha="0.8")
    assert r.status_code == 202
    job = r.json()
    assert r.headers["location"] == job["status_url"] == f"/videos/{job['id']}"
    seen = set()
    s = wait(client, job["id"], lambda s: seen.add(s["state"]) or s["state"] not in ("queued", "running"))
    assert s["state"] == "done", s
    assert seen <= {"queued", "running", "done"}
    assert (s["frames_done"], s["frames_total"], s["width"], s["height"], s["fps"], s["audio"]) == (8, 8, 64, 48,
                                                                                                   12.0, True)
    assert s["eta_seconds"] == 0 and s["frames_per_second"] > 0 and s["result_url"] == job["result_url"]
    r = client.get(job["result_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert r.headers["accept-ranges"] == "bytes" and int(r.headers["content-length"]) == s["result_bytes"]
    assert decode(r.content) == (8, 12.0, (64, 48), {"video", "audio"})
    # the upload and the segments go right after the job is marked done; the result is kept
    wait_for(lambda: work_files(client) == [f"{job['id']}.mp4"], "the job's work files to go")


def test_the_result_answers_range_requests(client):
    job = submit(client, clip()).json()
    wait(client, job["id"])
    url = job["result_url"]
    whole = client.get(url).content
    r = client.get(url, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == whole[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(whole)}"
    assert client.get(url, headers={"Range": "bytes=-64"}).content == whole[-64:]
    assert client.get(url, headers={"Range": f"bytes={len(whole) - 10}-"}).content == whole[-10:]
    r = client.get(url, headers={"Range": f"bytes={len(whole)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(whole)}"
    assert client.get(url, headers={"Range": "bytes=0-1,5-9"}).content == whole  # several: the whole file


def test_any_replica_answers_status_result_and_delete(make_client):
    a, b = make_client(), make_client()  # two processes sharing the state folder
    job = submit(a, clip()).json()
    assert wait(b, job["id"])["state"] == "done"
    assert b.get(job["result_url"]).content == a.get(job["result_url"]).content
    assert b.delete(f"/videos/{job['id']}").status_code == 204
    assert a.get(f"/videos/{job['id']}").status_code == 404
    assert a.get(job["result_url"]).status_code == 404


def test_delete_cancels_a_running_job_and_removes_its_files(client):
    job = submit(client, clip(96, 64, 120)).json()
    s = wait(client, job["id"], lambda s: s["frames_done"] > 0 or s["state"] == "done")
    assert s["state"] == "running" and s["eta_seconds"] is not None and s["frames_total"] == 120
    assert client.delete(f"/videos/{job['id']}").status_code == 204
    assert client.get(f"/videos/{job['id']}").status_code == 404
    engine = client.app.state.engine
    wait_for(lambda: engine.videos.active == 0, "the cancelled job's thread to stop")
    assert work_files(client) == []
    assert client.delete(f"/videos/{job['id']}").status_code == 404
    assert wait(client, submit(client, clip()).json()["id"])["state"] == "done"  # still serving


def test_finished_jobs_expire_with_their_results(make_client):
    client = make_client(video_ttl=3)  # long enough to see it done on a busy machine
    job = submit(client, clip()).json()
    assert wait(client, job["id"])["state"] == "done"
    time.sleep(3.2)
    assert client.get(f"/videos/{job['id']}").status_code == 404
    assert client.get(job["result_url"]).status_code == 404
    assert client.app.state.engine.videos.store.sweep() == 1
    assert work_files(client) == []


def test_one_process_renders_every_segment_and_the_joined_clip_is_whole(make_client):
    """On SQLite one process renders all segments (and the track and the join) of a clip."""
    client = make_client(video_segment_frames=8, replica_id="solo")
    s = wait(client, submit(client, clip(64, 48, 20)).json()["id"])
    assert s["state"] == "done", s
    assert (s["segments_total"], s["segments_done"], s["rendered_by"], s["frames_done"]) == (3, 3, {"solo": 3}, 20)
    assert decode(client.get(s["result_url"]).content)[:3] == (20, 12.0, (64, 48))


def held(client, **data) -> dict:
    """A job submitted while this replica's video threads are stopped (restart: ``go``)."""
    client.app.state.engine.videos.stop()
    return submit(client, clip(64, 48, 20), **data).json()


def go(client) -> None:
    engine = client.app.state.engine
    engine.videos.start(engine.stylizer)


def set_unit(client, job_id: str, name: str, value: str) -> None:
    store = client.app.state.engine.videos.store
    assert store.swap_unit(job_id, name, store.units(job_id)[name], value)


@pytest.mark.parametrize("unit,value,logged", [
    ("s0", '{"state":"leased","replica":"gone:1","lease":1.0,"frames":3,"rate":1.0}', "lease on s0 lapsed"),
    ("s1", "{not json", "not a unit"),
])
def test_a_lapsed_lease_or_a_corrupted_unit_is_done_here(make_client, caplog, unit, value, logged):
    """A segment leased by a replica that stopped renewing (its lease lapsed), or whose stored
    value is not a unit, is rendered here, with a log line; the job finishes whole."""
    client = make_client(video_segment_frames=8, replica_id="here")
    job = held(client)
    set_unit(client, job["id"], unit, value)
    go(client)
    s = wait(client, job["id"])
    assert s["state"] == "done" and s["frames_done"] == 20 and s["rendered_by"] == {"here": 3}
    assert logged in caplog.text


def test_a_shutdown_hands_the_segment_back_and_a_restart_finishes_the_job(make_client):
    first = make_client(video_segment_frames=20)
    running = submit(first, clip(64, 48, 60)).json()
    wait(first, running["id"], lambda s: s["frames_done"] > 0)
    store = first.app.state.engine.videos.store
    first.__exit__(None, None, None)  # the server stops: its segment is handed back, nothing fails
    # handed back, not left leased: the next replica takes it at once, not after the 60 s lease lapses
    states = [json.loads(u)["state"] for u in store.units(running["id"]).values()]
    assert "leased" not in states and "waiting" in states, states
    again = make_client(video_segment_frames=20)
    s = again.get(f"/videos/{running['id']}").json()
    assert s["state"] == "running" and s["segments_done"] < s["segments_total"] == 3, s
    s = wait(again, running["id"])
    assert s["state"] == "done" and s["frames_done"] == 60, s


@pytest.mark.parametrize("case,status,words", [
    ("text", 415, "not a video"), ("truncated", 415, "video"), ("still", 415, "still image"),
    ("hours", 413, "limit is 300"), ("frames", 413, "content_size"), ("bytes", 413, "ADAIN_MAX_VIDEO_BYTES"),
    ("alpha", 422, "alpha"), ("no-style", 400, "at least one style"), ("unknown-id", 400, "not registered"),
    ("bad-style", 415, "style"),
])
def test_bad_requests_get_a_clear_4xx_and_leave_nothing_on_disk(make_client, tmp_path, case, status, words):
    client = make_client(max_video_seconds=300, max_video_pixels=64 * 48 if case == "frames" else 1920 * 1080,
                         max_video_bytes=2_000 if case == "bytes" else 200 * 1024 * 1024)
    video, style, data = clip(), STYLE_A, {}
    if case == "text":
        video = b"just some text, not a video"
    elif case == "truncated":
        video = clip()[: len(clip()) // 3]
    elif case == "still":
        video = png(noise_image(64, 48))
    elif case == "hours":
        with av.open(str(tmp_path / "h.mp4"), "w") as c:
            v = c.add_stream("libx264", rate=1)
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
            for t in (0, 36000):
                frame = av.VideoFrame.from_ndarray(clips.pan(64, 48, 1)[0], format="rgb24")
                frame.pts = t
                c.mux(v.encode(frame))
            c.mux(v.encode())
        video = (tmp_path / "h.mp4").read_bytes()
    elif case == "frames":
        data = {"content_size": "96"}
    elif case == "bytes":
        video = clip(96, 64, 60)
    elif case == "alpha":
        data = {"alpha": "2"}
    elif case == "bad-style":
        style = b"not an image"
    if case == "no-style":
        r = client.post("/videos", files={"video": ("c.mp4", video, "video/mp4")})
    elif case == "unknown-id":
        r = client.post("/videos", files={"video": ("c.mp4", video, "video/mp4")}, data={"style_id": "nope"})
    else:
        r = submit(client, video, style, **data)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert work_files(client) == []
    assert client.app.state.engine.videos.active == 0
    if case != "bytes":  # and it keeps serving
        assert wait(client, submit(client, clip()).json()["id"])["state"] == "done"


def test_a_full_replica_answers_503_with_retry_after(make_client):
    client = make_client(video_jobs=1, video_queue=0)
    job = submit(client, clip(96, 64, 200)).json()
    r = submit(client, clip())
    assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
    assert client.delete(f"/videos/{job['id']}").status_code == 204
    wait_for(lambda: client.app.state.engine.videos.active == 0, "the cancelled job's thread to stop")
    assert submit(client, clip()).status_code == 202


def nice(thread: threading.Thread) -> int:
    """The thread's nice value as the kernel reports it (Linux: PRIO_PROCESS of a thread id)."""
    return os.getpriority(os.PRIO_PROCESS, thread.native_id)


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are a Linux feature")
def test_video_threads_run_below_image_requests(client):
    """A long video does not starve image requests: its threads run at nice 10, the model queue's
    at the process's own, so while both want the CPU the kernel gives image requests most of it.
    (The latency this buys is printed by bench/video.py --starvation, not asserted here.)"""
    seen: dict[str, int] = {}
    job = submit(client, clip(96, 64, 60)).json()
    wait(client, job["id"], lambda s: s["frames_done"] > 0)
    video = [t for t in threading.enumerate() if t.name[:6] == "video-" and t.name[6:].isdigit()]
    assert video and all(nice(t) == 10 for t in video), {t.name: nice(t) for t in video}
    engine = client.app.state.engine
    asyncio.run(engine.queue.run(Caller(LOCAL, "user", TenantLimits()),
                                 lambda turn: seen.setdefault("model", nice(threading.current_thread()))))
    assert seen["model"] == os.getpriority(os.PRIO_PROCESS, 0) < 10
    assert client.post("/stylize", files=files(png(noise_image(64, 64, seed=3)), STYLE_A)).status_code == 200
    client.delete(f"/videos/{job['id']}")


def test_video_routes_need_the_api_key_when_keys_are_set(make_client):
    client = make_client(api_keys="k1")
    assert submit(client, clip()).status_code == 401
    assert client.get("/videos/x").status_code == 401
    r = client.post("/videos", files={"video": ("c.mp4", clip(), "video/mp4"), "style": ("s.png", STYLE_A, "image/png")},
                    headers={"X-API-Key": "k1"})
    assert r.status_code == 202
    assert client.get(r.json()["status_url"], headers={"X-API-Key": "k1"}).status_code == 200



def test_a_clip_that_makes_the_renderer_raise_fails_after_its_attempts(make_client, monkeypatch):
    """Frame 5 of the clip makes the renderer raise: the segment is tried ADAIN_VIDEO_MAX_ATTEMPTS
    times, then the job fails with the segment's last error; the replica serves the next job."""
    import service.videos

    real, tries = service.videos.render_segment, []

    def poisoned(frames, src, size, segment, *a, **kw):
        tries.append(segment)
        for i, out in enumerate(real(frames, src, size, segment, *a, **kw)):
            if i == 5:
                raise RuntimeError("frame 5 breaks the decoder")
            yield out

    monkeypatch.setattr(service.videos, "render_segment", poisoned)
    client = make_client(video_segment_frames=60, video_max_attempts=3)
    s = wait(client, submit(client, clip(64, 48, 20)).json()["id"])
    assert s["state"] == "failed" and len(tries) == 3, (s, len(tries))
    assert "failed 3 times" in s["error"] and "RuntimeError: frame 5 breaks the decoder" in s["error"]
    monkeypatch.setattr(service.videos, "render_segment", real)
    assert wait(client, submit(client, clip()).json()["id"])["state"] == "done"


def test_a_segment_whose_replicas_keep_dying_fails_the_job(make_client):
    """Its lease lapsed a third time (the replicas rendering it died, as a clip that kills its
    renderer's process makes them): the job fails, it is not handed to yet another replica."""
    client = make_client(video_segment_frames=8, replica_id="here", video_max_attempts=3)
    job = held(client)
    set_unit(client, job["id"], "s0", '{"state":"leased","replica":"gone:1","lease":1.0,"token":2,"failures":2}')
    go(client)
    s = wait(client, job["id"])
    assert s["state"] == "failed" and "s0 failed 3 times" in s["error"] and "died or was killed" in s["error"], s


def test_a_queued_job_does_not_expire(make_client):
    """Accepted with a 202, a job waits as long as it must: the TTL counts from its end."""
    client = make_client(video_ttl=1)
    job = held(client)  # no video thread: it stays queued
    time.sleep(1.5)
    assert client.get(f"/videos/{job['id']}").json()["state"] == "queued"
    go(client)
    assert wait(client, job["id"])["state"] == "done"


def test_a_full_volume_fails_the_job_once_with_a_clear_error(make_client, monkeypatch):
    import errno

    client = make_client()
    store, calls = client.app.state.engine.videos.store, []

    def full(job_id, path):
        calls.append(job_id)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "keep_result", full)
    s = wait(client, submit(client, clip()).json()["id"])
    assert s["state"] == "failed" and "volume is full" in s["error"] and len(calls) == 1, (s, calls)
