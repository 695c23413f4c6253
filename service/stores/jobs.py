"""Video jobs as data: each job's record (state, progress) and its result (the MP4), kept where
every replica can read them, until they expire.

A record is JSON (our own fields; never pickle). ``update`` writes only a record that still
exists, so a DELETE from any replica wins over the worker's next progress report, and the worker
learns from that report that it should stop. Expiry: a record and its MP4 live ``ttl`` seconds
after the last write (Redis expires them itself; SQLite records carry the time and are swept).
A job belongs to the tenant that submitted it (records from before tenants: ``local``); who may
see it is decided by ``service.tenants.may_access``."""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from service.tenants import LOCAL

log = logging.getLogger("adain.store")
ACTIVE = ("queued", "running")
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
    stabilize: bool = True
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
    """``folder`` is this replica's own work space (uploads being rendered, MP4s being written)."""

    backend = "?"

    def __init__(self, folder: Path, ttl: float) -> None:
        self.folder = folder
        self.ttl = ttl

    def work_path(self, job_id: str, suffix: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{job_id}{suffix}"

    @abstractmethod
    def put(self, job: VideoJob) -> None:
        """Create (or overwrite) the record."""

    @abstractmethod
    def update(self, job: VideoJob) -> bool:
        """Overwrite the record if it still exists; False when it was deleted (or expired)."""

    @abstractmethod
    def get(self, job_id: str) -> VideoJob | None: ...

    @abstractmethod
    def delete(self, job_id: str) -> bool:
        """Remove the record and the result."""

    @abstractmethod
    def keep_result(self, job_id: str, path: Path) -> int:
        """Take the finished MP4 at ``path`` (this replica's disk) into the store; its size."""

    @abstractmethod
    def result_size(self, job_id: str) -> int | None: ...

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

    # A job's files (the clip, its style codes, the segments' MP4s), readable by every replica.

    @abstractmethod
    def put_file(self, job_id: str, name: str, path: Path) -> None:
        """Take the file at ``path`` into the store (``path`` is gone after)."""

    @abstractmethod
    def local_file(self, job_id: str, name: str) -> Path | None:
        """A path on this replica's disk holding the stored file (fetched once), or None if gone."""

    @abstractmethod
    def drop_files(self, job_id: str) -> None:
        """Remove a job's units and files, keeping its record and result (it has ended)."""

    def drop_local(self, job_id: str) -> None:
        """Forget this replica's copies of a job's files (the job ended here or elsewhere)."""

    @abstractmethod
    def read_result(self, job_id: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (inclusive) of the result, in pieces."""

    def sweep(self) -> int:
        """Delete what has expired; how many jobs."""
        return 0

    def close(self) -> None:
        pass


def now() -> float:
    return time.time()
