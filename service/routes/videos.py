"""Video jobs: POST a clip and styles (202 + a job id), follow its progress, fetch the MP4 (with
Range, so a browser can seek), DELETE to cancel and remove."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from service.deps import CurrentCaller, ReadyEngine, VideoFormDep
from service.errors import Conflict, NotFound, RangeNotSatisfiable, responses
from service.limits import queues_for
from service.forms import VideoForm, request_body
from service.schemas import VideoAccepted, VideoStatus
from service.stores import VideoJob

# another tenant's job answers exactly as an unknown id
router = APIRouter(prefix="/videos", tags=["videos"], responses=responses(401, 429, 503))


def status(job: VideoJob) -> VideoStatus:
    return VideoStatus(id=job.id, decoder=job.decoder or None, matching=job.matching, state=job.state,
                       frames_done=job.frames_done, frames_total=job.frames_total,
                       eta_seconds=job.eta_seconds, frames_per_second=round(job.rate, 3), width=job.width,
                       height=job.height, fps=job.fps, seconds=job.seconds, audio=job.audio,
                       segments_total=job.segments_total, segments_done=job.segments_done,
                       rendered_by=job.rendered_by,
                       created=datetime.fromtimestamp(job.created, timezone.utc),
                       result_url=f"/videos/{job.id}/result" if job.state == "done" else None,
                       result_bytes=job.result_bytes if job.state == "done" else None, error=job.error)


@router.post("", status_code=202, response_model=VideoAccepted, openapi_extra=request_body(VideoForm),
             responses=responses(400, 413, 415, 422),
             summary="Stylize a video clip: answers a job id at once; the MP4 follows")
@queues_for("video")
async def create_video(engine: ReadyEngine, caller: CurrentCaller, form: VideoFormDep,
                       response: Response) -> VideoAccepted:
    job = await engine.submit_video(caller, form)
    response.headers["Location"] = f"/videos/{job.id}"
    return VideoAccepted(id=job.id, status_url=f"/videos/{job.id}", result_url=f"/videos/{job.id}/result")


@router.get("/{job_id}", response_model=VideoStatus, responses=responses(404),
            summary="A video job's state and progress")
async def get_video(engine: ReadyEngine, caller: CurrentCaller, job_id: str) -> VideoStatus:
    return status(await engine.videos.status(caller, job_id))


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one range ``bytes=a-b`` / ``a-`` / ``-n`` asks for, as inclusive (start, end); None for
    the whole file (no header, or several ranges, answered whole as RFC 9110 allows)."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or m.groups() == ("", ""):
        return None
    first, last = m.groups()
    if first == "":
        start, end = max(0, size - number(last)), size - 1
    else:
        start, end = number(first), min(size - 1, number(last)) if last else size - 1
    if start >= size or start > end:
        raise RangeNotSatisfiable(f"the result is {size} bytes; range {header!r} is outside it",
                                  headers={"Content-Range": f"bytes */{size}"})
    return start, end


def number(digits: str) -> int:
    """A header's number; any of more than 18 digits as 10**18 (past every file): int() of
    thousands of digits is refused by Python (and slow before that)."""
    return int(digits) if len(digits) <= 18 else 10 ** 18


async def pieces(blocks: Iterator[bytes]) -> AsyncIterator[bytes]:
    while (piece := await asyncio.to_thread(next, blocks, None)) is not None:
        yield piece


@router.get("/{job_id}/result", response_class=StreamingResponse, responses={
    200: {"content": {"video/mp4": {}}, "description": "the stylized clip (H.264, yuv420p, faststart; audio kept)"},
    206: {"content": {"video/mp4": {}}, "description": "the bytes a Range header asked for"},
    **responses(404, 409, 416)}, summary="The stylized MP4 (Range requests supported)")
async def video_result(request: Request, engine: ReadyEngine, caller: CurrentCaller,
                       job_id: str) -> StreamingResponse:
    job = await engine.videos.status(caller, job_id)
    if job.state != "done":
        raise Conflict(f"the job is {job.state} ({job.frames_done}/{job.frames_total} frames)"
                       + (f": {job.error}" if job.error else ""))
    size = await asyncio.to_thread(engine.videos.store.result_size, job_id)
    if size is None:
        raise NotFound(f"the result of {job_id!r} is gone (it expired)")
    span = byte_range(request.headers.get("range"), size)
    start, end = span or (0, size - 1)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1), "Cache-Control": "private",
               # no file name: a page's download attribute names the file (a header's name would win)
               "Content-Disposition": "inline"}
    if span:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    blocks = engine.videos.store.read_result(job_id, start, end)
    return StreamingResponse(pieces(blocks), status_code=206 if span else 200, media_type="video/mp4",
                             headers=headers)


@router.delete("/{job_id}", status_code=204, responses=responses(404),
               summary="Cancel a video job (if running) and delete it and its result")
async def delete_video(engine: ReadyEngine, caller: CurrentCaller, job_id: str) -> Response:
    await engine.videos.delete(caller, job_id)
    return Response(status_code=204)
