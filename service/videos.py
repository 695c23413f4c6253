"""Video jobs: a clip takes minutes, so ``POST /videos`` answers at once (202) and the work goes on
in the background, in segments that any replica renders.

At submit the clip is probed (once), its style codes are made (once, from its first frame) and
both go into the job store with the clip itself, beside the job's units of work
(service/segments.py). Every replica runs ``ADAIN_VIDEO_JOBS`` video threads that take whatever
unit is ready, tenants in turn, render it and put the result back in the store; whoever finishes
the last segment's ``join`` writes the MP4. A replica that stops (SIGTERM) hands its unit back; one
that dies stops renewing its lease and another takes the unit over after
``ADAIN_VIDEO_STALE_SECONDS``. So a job fails only when its own data does (a damaged frame, with
that reason), when a part of it has failed ``ADAIN_VIDEO_MAX_ATTEMPTS`` times (its renderer raised,
or the replica rendering it died: a clip that kills its renderer fails, it does not take every
replica down in turn), or when the files' volume is full; never because a replica went away.

The threads run at a lower CPU priority than image requests (``_lower_priority``), so a long
video does not starve ``/stylize``. Why threads in this process rather than RQ/Dramatiq workers:
those run in processes of their own, each with a second copy of the model competing with this
process's image requests as equals."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

from PIL import Image

from model.adain import StyleCode, normalise_weights
from model.errors import InputError
from model.plan import Options, check_combination
from model.segments import WARMUP, Segment, encode, join, render_segment, split, track
from model.stylizer import Stylizer
from model.temporal import Stabilizer
from model.video import Frames, VideoInfo, VideoLimits, clip_codes, output_size, probe
from service.errors import Busy, Cancelled, NotFound, TooManyRequests
from service.forms import VideoForm
from service.ids import is_job_id
from service.segments import (JOIN, TRACK, Lease, Leases, Poisoned, new_units, progress, segment_index,
                              segment_name)
from service.settings import Settings
from service.stores import JobStore, StoreDown, VideoJob
from service.stores.jobs import ACTIVE
from service.stores import codec
from service.tenants import Caller, may_access
from service.uploads import SavedUpload, Upload, decode

log = logging.getLogger("adain.videos")
REPORT_EVERY = 0.5  # s between lease renewals (with progress) while rendering
POLL = 1.0  # s between looks for work when there was none


class Released(Exception):
    """This replica is stopping: hand the unit back."""


class VideoJobs:
    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.replica = settings.replica
        self.leases = Leases(store, self.replica, settings.video_stale_seconds, settings.video_max_attempts)
        self.limits = VideoLimits(settings.max_video_seconds, settings.max_video_pixels, settings.max_image_pixels,
                                  settings.max_video_frames, settings.max_video_fps)
        self.stylizer: Stylizer | None = None
        # a version's Stylizer by name (service/decoders.py; the engine sets it): the job's decoder
        self.stylizer_for: Callable[[str], Stylizer] = lambda name: self.stylizer
        self._lock = threading.Lock()
        self._accepted: set[str] = set()  # unfinished jobs this replica accepted (its 503 limit)
        self._working: dict[str, int] = {}  # job id -> this replica's threads on it
        self._cancel: dict[str, threading.Event] = {}  # DELETEs seen here, for the threads on those jobs
        self._served: Counter[str] = Counter()  # units taken per tenant: who goes next
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    # lifetime

    def start(self, stylizer: Stylizer) -> None:
        self.stylizer = stylizer
        self._closing.clear()
        self._threads = [threading.Thread(target=self._loop, name=f"video-{i}", daemon=True)
                         for i in range(self.settings.video_jobs)]
        self._threads.append(threading.Thread(target=self._keep, name="video-keeper", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop the threads: each hands its unit back (another replica, or this one restarted, goes on)."""
        self._closing.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=60)

    def close(self) -> None:
        self.stop()
        self.store.close()

    @property
    def active(self) -> int:
        """Units this replica is rendering now."""
        return sum(self._working.values())

    @property
    def waiting(self) -> int:
        """Jobs this replica accepted that are not finished."""
        return len(self._accepted)

    def retry_after_if_full(self) -> int | None:
        return 30 if len(self._accepted) >= self.settings.video_jobs + self.settings.video_queue else None

    # requests

    async def submit(self, caller: Caller, form: VideoForm, styles: list[Upload | Image.Image | StyleCode],
                     decoder: str = "") -> VideoJob:
        """Check the request, the styles and the clip (header and first frame), make the style codes,
        store the clip, the codes and the units, record the job as ``caller``'s. The upload is the
        store's from here, or removed if the job is refused."""
        upload = form.video
        try:
            options = form.options(self.settings)
            if self.retry_after_if_full() is not None:
                raise Busy(f"{len(self._accepted)} video jobs accepted here are unfinished; retry later",
                           headers={"Retry-After": "30"})
            await asyncio.to_thread(self._check_tenant, caller)
            info = await asyncio.to_thread(self._probe, upload)  # the clip first: it is what the job is
            size = output_size(info, options.content_size, self.limits.pixels)
            sources = await asyncio.to_thread(self._sources, styles, options)
            job = await asyncio.to_thread(self._create, caller, upload.path, info, size, sources, options,
                                          form.stabilize, decoder)
        finally:
            upload.path.unlink(missing_ok=True)
        with self._lock:
            self._accepted.add(job.id)
        self._wake.set()
        log.info("video %s queued: %dx%d, %d frames in %d segments", job.id, job.width, job.height,
                 job.frames_total, job.segments_total)
        return job

    def _check_tenant(self, caller: Caller) -> None:
        """Refuse early (before the clip is probed) a tenant at its limit; ``store.put`` decides."""
        mine = sum(1 for j in map(self.store.get, self.store.active()) if j is not None and j.tenant == caller.tenant)
        if mine >= caller.limits.max_video_jobs:
            raise self._over_limit(caller)

    @staticmethod
    def _over_limit(caller: Caller) -> TooManyRequests:
        return TooManyRequests(f"tenant {caller.tenant!r} has {caller.limits.max_video_jobs} video jobs queued or "
                               "running, its limit; wait for one to finish", headers={"Retry-After": "30"})

    def _sources(self, styles: list[Upload | Image.Image | StyleCode],
                 options: Options) -> list[Image.Image | StyleCode]:
        """Style uploads decoded now, so a bad style is a 4xx, not a failed job."""
        sources = [decode(s, self.settings, options.style_size, style=True) if isinstance(s, Upload) else s for s in styles]
        check_combination(sources, options, masked=False)
        normalise_weights(options.weights, len(sources))
        return sources

    def _probe(self, upload: SavedUpload) -> VideoInfo:
        try:
            return probe(upload.path, self.limits)
        except InputError as e:
            raise type(e)(f"{upload.label}: {e}") from None

    def _create(self, caller: Caller, clip: Path, info: VideoInfo, size: tuple[int, int],
                sources: list[Image.Image | StyleCode], options: Options, stabilize: bool,
                decoder: str = "") -> VideoJob:
        (code,) = clip_codes(self.stylizer, info.first, size, sources, options)
        n = len(split(info.frames, self.settings.video_segment_frames))
        now = time.time()
        job = VideoJob(secrets.token_urlsafe(16), tenant=caller.tenant, replica=self.replica, created=now,
                       updated=now, frames_total=info.frames, width=size[0], height=size[1], fps=float(info.fps),
                       seconds=info.seconds, audio=info.audio is not None,
                       segment_frames=self.settings.video_segment_frames, segments_total=n, alpha=options.alpha,
                       color_match=options.color_match, matching=options.matching, stabilize=stabilize,
                       decoder=decoder)
        codes = self.store.work_path(job.id, ".codes.new")
        codes.write_bytes(codec.encode(code, {}))
        try:
            self.store.put_file(job.id, "input", clip)
            self.store.put_file(job.id, "codes", codes)
            self.store.put_units(job.id, new_units(n, stabilize and n > 1))
            # last: from here the job is there for every replica to work on; the tenant's limit is
            # checked here again, in the same store operation as the write (_check_tenant is early)
            if not self.store.put(job, limit=caller.limits.max_video_jobs):
                raise self._over_limit(caller)
        except BaseException:
            self.store.delete(job.id)
            raise
        return job

    async def status(self, caller: Caller, job_id: str) -> VideoJob:
        """``caller``'s job with its progress (404 for an unknown id and for another tenant's alike)."""
        job = await asyncio.to_thread(self.store.get, job_id) if is_job_id(job_id) else None
        if job is None or not may_access(caller, job.tenant):
            raise NotFound(f"no video job {job_id!r} (finished jobs are kept {self.settings.video_ttl:g} s)")
        if job.state in ACTIVE:
            return progress(job, (await asyncio.to_thread(self.leases.read, job_id))[1])
        return job

    async def delete(self, caller: Caller, job_id: str) -> None:
        """Cancel and remove: this replica's threads stop at once, the others at their next renewal."""
        await self.status(caller, job_id)  # 404 unless it is the caller's
        with self._lock:
            if job_id in self._working:
                self._cancel.setdefault(job_id, threading.Event()).set()
            self._accepted.discard(job_id)
        if not await asyncio.to_thread(self.store.delete, job_id):
            raise NotFound(f"no video job {job_id!r}")

    # on a video thread

    def _loop(self) -> None:
        _lower_priority()
        while not self._closing.is_set():
            try:
                lease = self._take()
            except StoreDown as e:
                log.warning("video: the job store is down (%s)", e.detail)
                lease = None
            if lease is None:
                self._wake.wait(POLL)
                self._wake.clear()
                continue
            self._work(lease)

    def _take(self) -> Lease | None:
        """The next unit to work on: over the unfinished jobs, the tenant served least first."""
        jobs = [j for j in map(self.store.get, self.store.active()) if j is not None]
        for job in sorted(jobs, key=lambda j: (self._served[j.tenant], j.created)):
            if self._closing.is_set():
                return None
            lease = self.leases.claim(job)
            if isinstance(lease, Poisoned):
                self._fail(job, f"{lease.name} failed {lease.failures} times (ADAIN_VIDEO_MAX_ATTEMPTS); the last "
                                f"time: {lease.error}")
                continue
            if lease is not None:
                self._served[job.tenant] += 1
                if job.state == "queued":
                    self.store.update(replace(job, state="running", updated=time.time()))
                return lease
        return None

    def _work(self, lease: Lease) -> None:
        job = lease.job
        with self._lock:
            self._working[job.id] = self._working.get(job.id, 0) + 1
        held = Holding(self, lease)
        try:
            if lease.name == TRACK:
                self._track(held)
            elif lease.name == JOIN:
                self._join(held)
            else:
                self._segment(held)
        except Released:
            self.leases.release(held.lease)  # as last renewed: the stored value it must match
        except Cancelled:
            log.info("video %s: %s stopped (the job was deleted, or the unit taken over)", job.id, lease.name)
        except InputError as e:
            self._fail(job, str(e))
        except StoreDown as e:
            log.error("video %s: the job store is down (%s); %s will be taken up again", job.id, e.detail,
                      lease.name)
        except Exception as e:
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):  # no retry can succeed
                self._fail(job, f"the video files' volume is full ({e.strerror}); nothing more can be written")
            else:  # a bug, or what this unit's data does to the renderer: tried again, then the job fails
                log.exception("video %s: %s failed", job.id, lease.name)
                self._give_back_failed(held.lease, e)
        finally:
            with self._lock:
                self._working[job.id] -= 1
                if not self._working[job.id]:
                    del self._working[job.id]
                    self._cancel.pop(job.id, None)

    def _give_back_failed(self, lease: Lease, e: Exception) -> None:
        try:
            self.leases.fail(lease, f"{type(e).__name__}: {e}"[:300])
        except StoreDown as down:
            log.error("video %s: could not record the failure of %s (%s)", lease.job.id, lease.name, down.detail)

    def _file(self, job: VideoJob, name: str) -> Path:
        path = self.store.local_file(job.id, name)
        if path is None:
            raise Cancelled()  # the job's files are gone: it was deleted or has ended
        return path

    def _segments(self, job: VideoJob) -> list[Segment]:
        return split(job.frames_total, job.segment_frames, WARMUP)

    def _output(self, held: Holding, name: str, part: Path) -> None:
        """Commit ``part`` as the unit's output, fenced: named with the lease's token (the done unit
        records it; readers open that file only), then the unit done; a holder taken over meanwhile
        fails the swap and its file goes."""
        token = held.lease.unit.token
        self.store.put_file(held.lease.job.id, f"{name}.{token}", part)
        if not self.leases.finish(held.lease, held.frames):
            self.store.work_path(held.lease.job.id, f".{name}.{token}").unlink(missing_ok=True)
            raise Cancelled()

    def _done_file(self, job: VideoJob, units: dict, name: str, suffix: str = "") -> Path:
        """The output of the done unit ``name``: the file of the token it was done with."""
        return self._file(job, f"{name}{suffix}.{units[name].token}")

    def _track(self, held: Holding) -> None:
        job = held.lease.job
        motions = track(self._file(job, "input"), (job.width, job.height), self._segments(job), self.limits, held.check)
        path = self.store.work_path(job.id, f".track.{self.replica_tag}.new")
        try:
            path.write_text(json.dumps(motions))
            self._output(held, TRACK, path)
        finally:
            path.unlink(missing_ok=True)

    def _segment(self, held: Holding) -> None:
        lease = held.lease
        job, index = lease.job, segment_index(lease.name)
        segment = self._segments(job)[index]
        code, _, _ = codec.decode(self._file(job, "codes").read_bytes())
        motion = None
        if job.stabilize and segment.warm > 0:
            motion = json.loads(self._done_file(job, self.leases.read(job.id)[1], TRACK).read_text())[index]
        options = Options(alpha=job.alpha, color_match=job.color_match, matching=job.matching)
        frames = Frames(self.stylizer_for(job.decoder) if job.decoder else self.stylizer, [], options,
                        Stabilizer() if job.stabilize else None, codes=(code,))
        part = self.store.work_path(job.id, f".{lease.name}.{self.replica_tag}.mp4")
        try:
            size = (job.width, job.height)
            held.frames = encode(render_segment(frames, self._file(job, "input"), size, segment, motion, self.limits,
                                                held.check), part, size, _fraction(job.fps))
            self._output(held, f"{lease.name}.mp4", part)
        finally:
            part.unlink(missing_ok=True)
        log.info("video %s: %s done (%d frames)", job.id, lease.name, held.frames)

    def _join(self, held: Holding) -> None:
        """The segments the done units name (by token) into the result. The lease is renewed
        after the join and the result renamed in only while it is still ours; every holder joins
        the same fenced segments, and a rename is whole or nothing."""
        job = held.lease.job
        _, units = self.leases.read(job.id)
        parts = [self._done_file(job, units, segment_name(i), ".mp4") for i in range(job.segments_total)]
        out = self.store.work_path(job.id, f".{self.replica_tag}.mp4.part")
        try:
            frames = join(parts, self._file(job, "input"), out)
            held.renew()
            size = self.store.keep_result(job.id, out)
            if not self.leases.finish(held.lease, frames):
                raise Cancelled()
        finally:
            out.unlink(missing_ok=True)
        done = progress(job, units)
        took = max(time.time() - job.created, 1e-6)
        if not self.store.update(replace(done, state="done", frames_total=frames, frames_done=frames,
                                         rate=frames / took, result_bytes=size, updated=time.time())):
            self.store.delete(job.id)  # deleted meanwhile: drop the result too
            return
        self.store.drop_files(job.id)
        log.info("video %s done: %d frames in %d segments by %s", job.id, frames, job.segments_total,
                 done.rendered_by)

    @property
    def replica_tag(self) -> str:
        """This replica and thread in a file name (two threads may work on one job; replicas in
        containers may all be pid 1, so the replica's id, not the pid)."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", f"{self.replica}-{threading.get_native_id()}")

    def _fail(self, job: VideoJob, error: str) -> None:
        try:
            current = self.store.get(job.id)
            if current is not None and current.state in ACTIVE:
                self.store.update(replace(current, state="failed", error=error, updated=time.time()))
                self.store.drop_files(job.id)
                log.warning("video %s failed: %s", job.id, error)
        except StoreDown as e:
            log.error("video %s: could not record the failure (%s)", job.id, e.detail)

    def _keep(self) -> None:
        """Forget accepted jobs that ended, sweep expired jobs and orphaned work files."""
        last_sweep = 0.0
        while not self._closing.wait(min(5.0, POLL * 5)):
            try:
                active = set(self.store.active())
                with self._lock:
                    ended = {j for j in self._accepted if j not in active}
                    self._accepted -= ended
                if time.monotonic() - last_sweep > 60:
                    last_sweep = time.monotonic()
                    with self._lock:
                        busy = active | set(self._working)
                    self.store.sweep(busy)
            except StoreDown as e:
                log.warning("video keeper: the job store is down (%s)", e.detail)


class Holding:
    """A unit this replica works on: ``check(frames)``, called as the work goes, raises Released
    when the replica stops and Cancelled when the job was deleted here or the lease is no longer
    ours, and renews the lease every REPORT_EVERY s; ``lease`` is the lease as last renewed."""

    def __init__(self, jobs: VideoJobs, lease: Lease) -> None:
        self.jobs, self.lease = jobs, lease
        self.start = self.renewed = time.monotonic()
        self.frames = 0  # written so far

    def check(self, frames: int) -> None:
        if self.jobs._closing.is_set():
            raise Released()
        event = self.jobs._cancel.get(self.lease.job.id)
        if event is not None and event.is_set():
            raise Cancelled()
        self.frames = frames
        if time.monotonic() - self.renewed >= REPORT_EVERY:
            self.renew()

    def renew(self) -> None:
        """Renew the lease now; Cancelled when it is no longer ours."""
        t = time.monotonic()
        self.renewed = t
        lease = self.jobs.leases.renew(self.lease, self.frames, self.frames / max(t - self.start, 1e-6))
        if lease is None:
            raise Cancelled()
        self.lease = lease


def _fraction(fps: float) -> Fraction:
    """The stored rate back as the fraction it was (30000/1001 for 29.97)."""
    return Fraction(fps).limit_denominator(1001)


def _lower_priority() -> None:
    """Run this video thread at nice 10. Image requests and video frames then share the cores as
    the kernel sees fit: a frame's threads (torch's, started from this thread, inherit the value)
    get a tenth of an image request's share while both want the CPU, and all of it otherwise
    (measured against equal priority and against waiting for the frame: docs/video.md). Linux
    only: elsewhere the call would lower the whole process."""
    if sys.platform == "linux":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
