"""Video jobs as data: each job's record (state, progress) and its result (the MP4), kept where
every replica can read them, until they expire.

A record is JSON (our own fields; never pickle). ``update`` writes only a record that still
exists, so a DELETE from any replica wins over the worker's next progress report, and the worker
learns from that report that it should stop. Expiry: a job queued or running never expires (it
was accepted with a 202: however long it waits, it is done); once it has ended, its record and
MP4 live ``ttl`` seconds (Redis expires the record itself; SQLite records carry the time and are
swept; the files of a job whose record is gone are swept).
A job belongs to the tenant that submitted it (records from before tenants: ``local``); who may
see it is decided by ``service.tenants.may_access``."""

from __future__ import annotations

import json
import logging
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from service.ids import is_job_id
from service.tenants import LOCAL

log = logging.getLogger("adain.store")
ACTIVE = ("queued", "running")
CHUNK = 256 * 1024  # a result is read in pieces of this size
QUIET = 60.0  # seconds a file of no job must be untouched before it is swept
STATES = ACTIVE + ("done", "failed", "cancelled")


@dataclass
class VideoJob:
    id: str
    tenant: str = LOCAL  # who submitted it: the only one (with admins) who sees it
    replica: str = ""  # the replica that accepted it (ADAIN_REPLICA_ID); rendered_by says who rendered it
    state: str = "queued"
    created: float = 0.0
    updated: float = 0.0  # last change of state
    frames_done: int = 0
    frames_total: int = 0
    rate: float = 0.0  # frames/s so far
    width: int = 0
    height: int = 0
    fps: float = 0.0
    seconds: float = 0.0
    audio: bool = False
    error: str | None = None
    result_bytes: int = 0
    # how the work is done, fixed at submit (service/segments.py)
    segment_frames: int = 0  # frames per segment (0: a record from before segments)
    segments_total: int = 0
    alpha: float = 1.0
    color_match: float = 0.0
    matching: str = "adain"
    stabilize: bool = True
    decoder: str = ""  # the decoder version chosen at submit ("": the process's own, as before versions)
    # progress: summed over the segments while the job runs, recorded when it ends
    segments_done: int = 0
    rendered_by: dict[str, int] = field(default_factory=dict)  # replica -> segments it rendered

    @property
    def eta_seconds(self) -> float | None:
        if self.state == "done":
            return 0.0
        if self.state != "running" or self.rate <= 0:
            return None
        return max(0.0, (self.frames_total - self.frames_done) / self.rate)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, job_id: str, text: bytes | str | None) -> VideoJob | None:
        """A stored record, or None (logged) for one that is not a job record."""
        if text is None:
            return None
        try:
            data = json.loads(text)
            data.setdefault("replica", data.get("owner", ""))  # the field's name before tenants
            job = cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
            if job.id != job_id or job.state not in STATES:
                raise ValueError(f"id {job.id!r}, state {job.state!r}")
            return job
        except (ValueError, TypeError, KeyError) as e:
            log.warning("video job %r: skipping a stored value that is not a job record: %s", job_id, e)
            return None


class JobStore(ABC):
    """Records, units and expiry in the store (SQLite or Redis); a job's bytes (the clip, its style
    codes, the segments' MP4s, the result) as files in ``folder``, shared by every replica that
    shares the store (one host's state folder for SQLite; a shared volume, ADAIN_VIDEOS_DIR, for
    Redis): never values in Redis, whose memory holds every tenant's styles. A file is written
    beside its final name and renamed into place (atomic on one file system), so a reader sees a
    whole file or none."""

    backend = "?"

    def __init__(self, folder: Path, ttl: float) -> None:
        self.folder = folder
        self.ttl = ttl

    def expires(self, job: VideoJob) -> float | None:
        """Unix time the record expires: ``ttl`` after it ended, never while it is active."""
        return None if job.state in ACTIVE else now() + self.ttl

    def work_path(self, job_id: str, suffix: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{job_id}{suffix}"

    @abstractmethod
    def put(self, job: VideoJob, limit: int | None = None) -> bool:
        """Create (or overwrite) the record; with a ``limit``, only while the job's tenant has fewer
        than ``limit`` jobs queued or running, counted and written in one store operation (so
        replicas accepting at once cannot all pass). False when over it."""

    @abstractmethod
    def update(self, job: VideoJob) -> bool:
        """Overwrite the record if it still exists; False when it was deleted (or expired)."""

    @abstractmethod
    def get(self, job_id: str) -> VideoJob | None: ...

    @abstractmethod
    def delete(self, job_id: str) -> bool:
        """Remove the record, the units and every file (the result too)."""

    @abstractmethod
    def active(self) -> list[str]:
        """The ids of jobs queued or running, oldest first: where every replica looks for work."""

    # A job's units of work (service/segments.py): name -> a small JSON value, changed only by
    # compare-and-set, so two replicas never both take one. Each swap keeps the job from expiring.

    @abstractmethod
    def put_units(self, job_id: str, units: dict[str, str]) -> None: ...

    @abstractmethod
    def units(self, job_id: str) -> dict[str, str]:
        """Every unit's value; empty when the job is gone."""

    @abstractmethod
    def swap_unit(self, job_id: str, name: str, old: str, new: str) -> bool:
        """Set the unit to ``new`` if it is still ``old`` and the job exists; False otherwise."""

    @abstractmethod
    def drop_units(self, job_id: str) -> None: ...

    def drop_files(self, job_id: str) -> None:
        """Remove a job's units and work files, keeping its record and result (it has ended)."""
        self.drop_units(job_id)
        self.remove_files(job_id, keep_result=True)

    # A job's files, in the shared folder

    def _result(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.mp4"

    def put_file(self, job_id: str, name: str, path: Path) -> None:
        """Take the file at ``path`` (gone after) as the job's file ``name``: a rename within the
        folder, a copy first from another disk (a file there is written in place first)."""
        shutil.move(path, self.work_path(job_id, f".{name}"))

    def local_file(self, job_id: str, name: str) -> Path | None:
        """The path of the job's file ``name``, or None if it is gone."""
        path = self.work_path(job_id, f".{name}")
        return path if path.exists() else None

    def remove_files(self, job_id: str, keep_result: bool = False) -> None:
        for path in self.folder.glob(f"{job_id}.*"):
            if not (keep_result and path == self._result(job_id)):
                path.unlink(missing_ok=True)

    def keep_result(self, job_id: str, path: Path) -> int:
        """Take the finished MP4 at ``path`` (in the folder) as the result, by rename; its size."""
        size = path.stat().st_size
        path.replace(self._result(job_id))
        return size

    def result_size(self, job_id: str) -> int | None:
        try:
            return self._result(job_id).stat().st_size
        except FileNotFoundError:
            return None

    def read_result(self, job_id: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (inclusive) of the result, in pieces."""
        with open(self._result(job_id), "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0 and (piece := f.read(min(left, CHUNK))):
                left -= len(piece)
                yield piece

    def sweep(self, busy: Collection[str] = ()) -> int:
        """Delete the files of jobs that are gone (expired, or a crash left them) and untouched for
        QUIET s (an upload or a segment being written is touched as it grows); ``busy``: ids being
        worked on here. How many jobs' files went."""
        quiet, gone = time.time() - QUIET, set()
        for path in self.folder.glob("*") if self.folder.is_dir() else ():
            job_id = path.name.split(".")[0]
            try:
                if job_id in busy or path.stat().st_mtime > quiet:
                    continue
                # an upload's name is no job's id (never made into a store key): gone too
                if job_id in gone or not is_job_id(job_id) or self.get(job_id) is None:
                    path.unlink()
                    gone.add(job_id)
            except FileNotFoundError:
                pass
        return len(gone)

    def close(self) -> None:
        pass


def now() -> float:
    return time.time()
