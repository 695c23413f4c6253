"""Video jobs in segments with real parts: two uvicorn replicas on a real redis-server render the
segments of one clip between them; DELETE stops both; SIGTERM hands a segment back and nothing
finished is rendered twice; SIGKILL of the replica that took the upload does not fail the job."""

from __future__ import annotations

import io
import re
import signal

import av
import pytest

import clips
from helpers import noise_image, png
from redisproc import run_redis
from serverproc import Server, run_server
from waiting import HANG, wait_for

STYLE = png(noise_image(32, 32, seed=2))
FRAMES = 48


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("clip") / "pan.mp4"
    return clips.write(path, clips.pan(96, 72, FRAMES), fps=12, audio=True).read_bytes()


def submit(server: Server, clip: bytes) -> str:
    with server.client() as c:
        r = c.post("/videos", files={"video": ("c.mp4", clip, "video/mp4"), "style": ("s.png", STYLE, "image/png")})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def status(server: Server, job_id: str) -> dict:
    with server.client() as c:
        return c.get(f"/videos/{job_id}").json()


def wait(server: Server, job_id: str, until) -> dict:
    """The job's status once ``until`` holds."""
    def met() -> dict | None:
        s = status(server, job_id)
        return s if until(s) else None

    return wait_for(met, f"video job {job_id}", every=0.1)


def ended(s: dict) -> bool:
    return s["state"] not in ("queued", "running")


def rendering(server: Server) -> float:
    return server.metric("adain_video_jobs_running")


def check_result(server: Server, job_id: str) -> None:
    with server.client() as c:
        data = c.get(f"/videos/{job_id}/result").content
    with av.open(io.BytesIO(data)) as out:
        assert {s.type for s in out.streams} == {"video", "audio"}
        assert sum(1 for _ in out.decode(video=0)) == FRAMES


def done_lines(*servers: Server, job_id: str) -> list[str]:
    """The 'sN done' log lines of a job, from every replica."""
    return [m for s in servers for m in re.findall(rf"video {job_id}: (s\d+) done", s.log.read_text())]


def test_replicas_share_a_clips_segments_and_survive_each_others_stopping(server_env, clip, tmp_path):
    with run_redis(tmp_path / "redis") as redis:
        env = {**server_env, "ADAIN_REDIS_URL": redis.url, "ADAIN_VIDEO_SEGMENT_FRAMES": "8",
               "ADAIN_VIDEO_STALE_SECONDS": "3", "ADAIN_TORCH_THREADS": "1",
               "ADAIN_VIDEO_FILES_DIR": str(tmp_path / "shared-videos")}  # the volume every replica mounts
        with run_server(tmp_path / "a", log_level="info", ADAIN_REPLICA_ID="a", **env) as a:
            with run_server(tmp_path / "b", log_level="info", ADAIN_REPLICA_ID="b", **env) as b:
                # both render segments of one job
                job = submit(a, clip)
                s = wait(b, job, ended)
                assert s["state"] == "done" and s["segments_total"] == 6, s
                assert set(s["rendered_by"]) == {"a", "b"} and sum(s["rendered_by"].values()) == 6, s
                check_result(b, job)

                # DELETE from one replica stops the segments on both (the other at its next renewal)
                job = submit(a, clip)
                wait_for(lambda: rendering(a) and rendering(b), "both replicas rendering")
                with b.client() as c:
                    assert c.delete(f"/videos/{job}").status_code == 204
                wait_for(lambda: rendering(a) == 0 and rendering(b) == 0, "both replicas to stop")
                assert status(a, job).get("state") is None  # 404 everywhere

                # SIGTERM mid-segment: b hands its segment back, a finishes the job, nothing twice
                job = submit(a, clip)
                wait_for(lambda: rendering(b) > 0, "b rendering")
                b.proc.send_signal(signal.SIGTERM)
                b.proc.wait(HANG)
                log = b.log.read_text()
                # it was rendering: it handed its unit back (or, in the moment before the signal,
                # finished it), and nothing went wrong on the way out
                last = [line for line in log.splitlines() if f"video {job}: " in line][-1]
                assert "handed back" in last or " done (" in last, last
                assert "Traceback" not in log
                s = wait(a, job, ended)
                assert s["state"] == "done" and s["frames_done"] == FRAMES, s
                names = done_lines(a, b, job_id=job)
                assert sorted(names) == sorted(set(names)) and len(names) == 6  # each segment once
                check_result(a, job)

            with run_server(tmp_path / "c", log_level="info", ADAIN_REPLICA_ID="c", **env) as c:
                # SIGKILL of the replica that took the upload, after its first segment
                job = submit(a, clip)
                assert wait(a, job, lambda s: s["rendered_by"].get("a", 0) >= 1 or ended(s))["state"] == "running"
                a.proc.send_signal(signal.SIGKILL)
                a.proc.wait(HANG)
                s = wait(c, job, ended)
                assert s["state"] == "done" and s["frames_done"] == FRAMES, s
                assert s["rendered_by"].get("c", 0) >= 1
                check_result(c, job)
