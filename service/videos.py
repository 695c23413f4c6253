"""Video jobs: a clip takes minutes, so ``POST /videos`` answers at once (202) and the work goes on
in the background.

A job runs on the replica that received its upload (the clip is already on that replica's disk; a
shared queue would first have to copy it into Redis), on a pool of ``ADAIN_VIDEO_JOBS`` threads
with ``ADAIN_VIDEO_QUEUE`` waiting places (503 beyond), at a lower CPU priority than image
requests (``_lower_priority``), so a long video does not starve ``/stylize``. What every replica
shares is the job's record and its result, in the job store (service/stores), so any replica
answers status, result and DELETE. That is why this is not a job-queue library: RQ and Dramatiq run
jobs in worker processes of their own, which would each load a second copy of the model and
compete with this process's image requests as equals, and arq would still need an in-process
default without Redis; what they add over a thread pool (retries, scheduling) is what a video job
must not do: re-render a clip twice. A worker that dies stops reporting; a job not heard from for
``ADAIN_VIDEO_STALE_SECONDS`` is reported failed, never "running" for ever. A server that shuts
down fails its unfinished jobs, with a message saying so."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

from PIL import Image

from model.adain import StyleCode, normalise_weights
from model.errors import InputError
from model.plan import Options, check_combination
from model.stylizer import Stylizer
from model.video import VideoLimits, output_size, probe, stylize_video
from service.errors import Busy, Cancelled, NotFound, TooManyRequests
from service.forms import VideoForm
from service.settings import Settings
from service.stores import JobStore, StoreDown, VideoJob
from service.stores.jobs import ACTIVE
from service.tenants import Caller, may_access
from service.uploads import SavedUpload, Upload, decode

log = logging.getLogger("adain.videos")
REPORT_EVERY = 0.5  # s between progress writes to the store


class VideoJobs:
    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        self.limits = VideoLimits(settings.max_video_seconds, settings.max_video_pixels, settings.max_image_pixels)
        self.stylizer: Stylizer | None = None
        self._pool = ThreadPoolExecutor(settings.video_jobs, thread_name_prefix="video", initializer=_lower_priority)
        self._lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}  # this replica's unfinished jobs
        self._queued: dict[str, VideoJob] = {}  # those not started: the keeper reports them alive
        self._lines: OrderedDict[str, deque[Callable[[], None]]] = OrderedDict()  # queued work, per tenant
        self._tenants: dict[str, str] = {}  # unfinished job id -> tenant
        self._closing = threading.Event()
        self._keeper: threading.Thread | None = None

    # lifetime

    def start(self, stylizer: Stylizer) -> None:
        self.stylizer = stylizer
        self._keeper = threading.Thread(target=self._keep, name="video-keeper", daemon=True)
        self._keeper.start()

    def close(self) -> None:
        """Stop: unfinished jobs end as failed (with a message), their files are removed."""
        self._closing.set()
        with self._lock:
            for event in self._cancel.values():
                event.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for job in list(self._queued.values()):  # never started: the pool dropped them
            self._finish(job, "failed", "the server shut down before the job started; submit it again")
        if self._keeper is not None:
            self._keeper.join(timeout=5)
        self.store.close()

    @property
    def active(self) -> int:
        return len(self._cancel)

    @property
    def waiting(self) -> int:
        return len(self._queued)

    def retry_after_if_full(self) -> int | None:
        return 30 if self.active >= self.settings.video_jobs + self.settings.video_queue else None

    # requests

    async def submit(self, caller: Caller, form: VideoForm, styles: list[Upload | Image.Image | StyleCode]) -> VideoJob:
        """Check the request, the styles and the clip (header and first frame), record the job as
        ``caller``'s, queue it. The upload is the job's from here (removed when it ends), or
        removed now if the job is refused."""
        upload = form.video
        try:
            options = form.options(self.settings)
            if self.retry_after_if_full() is not None:
                raise Busy(f"{self.active} video jobs are in progress or waiting on this server; retry later",
                           headers={"Retry-After": "30"})
            mine = sum(1 for t in self._tenants.values() if t == caller.tenant)
            if mine >= caller.limits.max_video_jobs:
                raise TooManyRequests(f"tenant {caller.tenant!r} has {mine} video jobs queued or running on this "
                                      "server, its limit; wait for one to finish", headers={"Retry-After": "30"})
            info = await asyncio.to_thread(self._probe, upload)  # the clip first: it is what the job is
            sources = await asyncio.to_thread(self._sources, styles, options)
            w, h = output_size(info, options.content_size, self.limits.pixels)
            now = time.time()
            job = VideoJob(secrets.token_urlsafe(16), tenant=caller.tenant, replica=self.replica, created=now,
                           updated=now, frames_total=info.frames, width=w, height=h, fps=float(info.fps),
                           seconds=info.seconds, audio=info.audio is not None)
            src = self.store.work_path(job.id, ".input")
            upload.path.replace(src)
        except BaseException:
            upload.path.unlink(missing_ok=True)
            raise
        try:
            await asyncio.to_thread(self.store.put, job)
        except BaseException:
            src.unlink(missing_ok=True)
            raise
        with self._lock:
            self._cancel[job.id] = threading.Event()
            self._queued[job.id] = job
            self._tenants[job.id] = caller.tenant
            self._lines.setdefault(caller.tenant, deque()).append(
                partial(self._run, job, src, sources, options, form.stabilize))
        self._pool.submit(self._next)
        log.info("video %s queued: %dx%d, %d frames", job.id, w, h, job.frames_total)
        return job

    def _sources(self, styles: list[Upload | Image.Image | StyleCode],
                 options: Options) -> list[Image.Image | StyleCode]:
        """Style uploads decoded now, so a bad style is a 4xx, not a failed job."""
        sources = [decode(s, self.settings, options.style_size) if isinstance(s, Upload) else s for s in styles]
        check_combination(sources, options, masked=False)
        normalise_weights(options.weights, len(sources))
        return sources

    def _probe(self, upload: SavedUpload):
        try:
            return probe(upload.path, self.limits)
        except InputError as e:
            raise type(e)(f"{upload.label}: {e}") from None

    async def status(self, caller: Caller, job_id: str) -> VideoJob:
        """``caller``'s job (404 for an unknown id and for another tenant's alike)."""
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None or not may_access(caller, job.tenant):
            raise NotFound(f"no video job {job_id!r} (finished jobs are kept {self.settings.video_ttl:g} s)")
        if job.state in ACTIVE and time.time() - job.updated > self.settings.video_stale_seconds:
            # its worker stopped (the replica died): say so instead of "running" for ever
            job = replace(job, state="failed", error="the server working on this job stopped; submit it again")
            await asyncio.to_thread(self.store.update, job)
        return job

    async def delete(self, caller: Caller, job_id: str) -> None:
        await self.status(caller, job_id)  # 404 unless it is the caller's
        event = self._cancel.get(job_id)
        if event is not None:
            event.set()
        if not await asyncio.to_thread(self.store.delete, job_id) and event is None:
            raise NotFound(f"no video job {job_id!r}")

    # on a video thread

    def _next(self) -> None:
        """Run the next queued job, tenants in turn: a tenant with many clips queued does not keep
        another's waiting behind all of them."""
        with self._lock:
            tenant, line = next(iter(self._lines.items()))
            work = line.popleft()
            if line:
                self._lines.move_to_end(tenant)
            else:
                del self._lines[tenant]
        work()

    def _run(self, job: VideoJob, src: Path, sources: list[Image.Image | StyleCode], options: Options,
             stabilize: bool) -> None:
        cancel = self._cancel[job.id]
        out = src.with_suffix(".mp4.part")
        try:
            with self._lock:  # with the keeper's reports, so a late one cannot say "queued" again
                self._queued.pop(job.id, None)
                if cancel.is_set():
                    raise Cancelled()
                job = replace(job, state="running", updated=time.time())
                if not self.store.update(job):
                    raise Cancelled()
            start, reported = time.monotonic(), 0.0

            def progress(done: int, total: int) -> None:
                nonlocal job, reported
                if cancel.is_set():
                    raise Cancelled()
                t = time.monotonic()
                if t - reported >= REPORT_EVERY or done == total:
                    reported = t
                    job = replace(job, frames_done=done, frames_total=total, rate=done / max(t - start, 1e-6),
                                  updated=time.time())
                    if not self.store.update(job):  # deleted from some replica
                        raise Cancelled()

            stylize_video(self.stylizer, src, out, sources, options, stabilize=stabilize, limits=self.limits,
                          progress=progress)
            size = self.store.keep_result(job.id, out)
            self._finish(replace(job, frames_total=job.frames_done, result_bytes=size), "done")
            log.info("video %s done: %d frames at %.2f frames/s", job.id, job.frames_done, job.rate)
        except Cancelled:
            if self._closing.is_set():
                self._finish(job, "failed", "the server shut down before the job finished; submit it again")
            else:
                self.store.delete(job.id)  # a DELETE asked for it; no-op if already gone
        except InputError as e:
            self._finish(job, "failed", str(e))
        except StoreDown as e:
            log.error("video %s: the job store is down (%s); the job is lost", job.id, e.detail)
        except Exception:
            log.exception("video %s failed", job.id)
            self._finish(job, "failed", "internal error while rendering; it has been logged")
        finally:
            src.unlink(missing_ok=True)
            out.unlink(missing_ok=True)
            with self._lock:
                self._cancel.pop(job.id, None)
                self._tenants.pop(job.id, None)

    def _finish(self, job: VideoJob, state: str, error: str | None = None) -> None:
        try:
            if not self.store.update(replace(job, state=state, error=error, updated=time.time())):
                self.store.delete(job.id)  # deleted meanwhile: drop the result too
        except StoreDown as e:
            log.error("video %s: could not record %s (%s)", job.id, state, e.detail)

    def _keep(self) -> None:
        """Report queued jobs alive, and sweep expired jobs and orphaned work files."""
        every = min(5.0, self.settings.video_stale_seconds / 4)
        last_sweep = 0.0
        while not self._closing.wait(every):
            try:
                with self._lock:
                    for job in self._queued.values():
                        self.store.update(replace(job, updated=time.time()))
                if time.monotonic() - last_sweep > 60:
                    last_sweep = time.monotonic()
                    self.store.sweep()
                    self._sweep_files()
            except StoreDown as e:
                log.warning("video keeper: the job store is down (%s)", e.detail)

    def _sweep_files(self) -> None:
        """Work files older than a job can live and not this replica's: left by a crash."""
        cutoff = time.time() - self.settings.video_ttl - 60
        for path in self.store.folder.glob("*"):
            job_id = path.name.split(".")[0]
            try:
                if job_id not in self._cancel and path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                pass


def _lower_priority() -> None:
    """Run this video thread at nice 10. Image requests and video frames then share the cores as
    the kernel sees fit: a frame's threads (torch's, started from this thread, inherit the value)
    get a tenth of an image request's share while both want the CPU, and all of it otherwise.
    Measured with a 640x480 clip rendering: /stylize 256² went from 0.34-0.49 s idle to 0.41-0.42 s
    (at nice 0: 0.39 -> 0.61 s; waiting for the current frame to end instead: 0.44 -> 2.66 s).
    Linux only: elsewhere the call would lower the whole process."""
    if sys.platform == "linux":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
