"""A video job's units of work and who holds them: the leases that let any replica render any
part of a clip and another take over a part whose replica stopped.

A job has a ``track`` unit (the camera's path over the whole clip, model/segments.py; only when
stabilizing and longer than one segment), one unit per segment (``s0``, ``s1`` ...), and ``join``
(the segments into one MP4 with the audio). A unit is *waiting*, *leased* (by a replica, until a
time it renews while it works) or *done*. It may be taken when it is waiting, or leased with the
lease lapsed, and when what it needs is done: segment 0 needs nothing, later segments the track,
``join`` every segment. Every change is a compare-and-set on the unit's stored value
(``JobStore.swap_unit``), so of two replicas reaching for a unit one gets it, a replica whose
lease was taken over learns so at its next renewal, and a done unit is never done again.

Each take raises the unit's ``token`` (a fencing token: it only grows), and a unit's output file
is named with the token of the lease that wrote it; the done unit records that token and readers
open that file only. A holder that stalled, was taken over and wakes up writes a file nobody reads
and fails its compare-and-set. A take of a lapsed lease (its replica died, perhaps killed by this
very unit) and a failed render count as ``failures``; at ``max_failures`` the unit is not taken
again and the job fails with the unit's last error (``Poisoned``): a clip that kills its renderer
cannot kill every replica in turn for ever.

Why leases in the job store rather than Redis Streams (XREADGROUP/XAUTOCLAIM) or a queue
library: the same code runs on SQLite (the embedded default, one process), a unit's readiness
depends on other units (a stream hands out entries in order, whatever they wait for), and the
progress every status read sums lives in the same values the leases do."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace

from service.stores import JobStore, VideoJob

log = logging.getLogger("adain.videos")
TRACK, JOIN = "track", "join"
STATES = ("waiting", "leased", "done")


def segment_name(index: int) -> str:
    return f"s{index}"


def segment_index(name: str) -> int | None:
    return int(name[1:]) if name[:1] == "s" and name[1:].isdigit() else None


@dataclass(frozen=True)
class Unit:
    state: str = "waiting"
    replica: str = ""  # who holds it (leased) or did it (done)
    lease: float = 0.0  # unix time the lease lapses
    frames: int = 0  # frames written so far (a segment)
    rate: float = 0.0  # frames/s of the replica rendering it
    token: int = 0  # takes so far: the fencing token of the lease (and of the file it wrote)
    failures: int = 0  # takes that ended without the unit done or handed back
    error: str = ""  # why the last one failed

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, job_id: str, name: str, text: str) -> Unit | None:
        """The stored unit, or None (logged) for a value that is not one."""
        try:
            unit = cls(**json.loads(text))
            if unit.state not in STATES:
                raise ValueError(f"state {unit.state!r}")
            return unit
        except (ValueError, TypeError) as e:
            log.warning("video %s: unit %s holds a value that is not a unit (%s); it is done again", job_id, name, e)
            return None


@dataclass(frozen=True)
class Poisoned:
    """A unit that failed ``max_failures`` times: its job fails with ``error``."""

    name: str
    failures: int
    error: str


@dataclass(frozen=True)
class Lease:
    """A unit this replica holds: ``stored`` is its value in the store (what the next swap expects)."""

    job: VideoJob
    name: str
    unit: Unit
    stored: str


def new_units(segments: int, track: bool) -> dict[str, str]:
    """The units of a new job, all waiting."""
    names = ([TRACK] if track else []) + [segment_name(i) for i in range(segments)] + [JOIN]
    return {name: Unit().to_json() for name in names}


def _ready(name: str, units: dict[str, Unit | None]) -> bool:
    if name == JOIN:
        return all(u is not None and u.state == "done" for n, u in units.items() if segment_index(n) is not None)
    if segment_index(name):  # a segment after the first starts where the track says
        track = units.get(TRACK, Unit(state="done"))
        return track is not None and track.state == "done"
    return True


def _order(name: str) -> tuple[int, int]:
    index = segment_index(name)
    return (0, 0) if name == TRACK else (2, 0) if name == JOIN else (1, index or 0)


class Leases:
    def __init__(self, store: JobStore, replica: str, seconds: float, max_failures: int = 3) -> None:
        self.store, self.replica, self.seconds, self.max_failures = store, replica, seconds, max_failures

    def read(self, job_id: str) -> tuple[dict[str, str], dict[str, Unit | None]]:
        stored = self.store.units(job_id)
        return stored, {name: Unit.parse(job_id, name, text) for name, text in stored.items()}

    def claim(self, job: VideoJob) -> Lease | Poisoned | None:
        """The first unit of ``job`` that may be taken now, taken; Poisoned when that unit has
        failed too often; None when there is none."""
        stored, units = self.read(job.id)
        now = time.time()
        for name in sorted(units, key=_order):
            unit = units[name] or Unit()  # a value that is not a unit is done again
            lapsed = unit.state == "leased" and unit.lease < now
            if not (unit.state == "waiting" or lapsed) or not _ready(name, units):
                continue
            failures, error = unit.failures, unit.error
            if lapsed:
                log.warning("video %s: %s's lease on %s lapsed; taking it over", job.id, unit.replica, name)
                failures += 1
                error = f"the replica rendering {name} stopped without finishing it (it died or was killed)"
            if failures >= self.max_failures:
                return Poisoned(name, failures, error)
            mine = Unit("leased", self.replica, now + self.seconds, token=unit.token + 1, failures=failures,
                        error=error)
            if self.store.swap_unit(job.id, name, stored[name], value := mine.to_json()):
                return Lease(job, name, mine, value)
        return None

    def _swap(self, lease: Lease, unit: Unit) -> Lease | None:
        value = unit.to_json()
        return replace(lease, unit=unit, stored=value) if self.store.swap_unit(
            lease.job.id, lease.name, lease.stored, value) else None

    def renew(self, lease: Lease, frames: int, rate: float) -> Lease | None:
        """The lease renewed with this progress; None when it is no longer ours (taken over after
        lapsing, or the job deleted or ended)."""
        return self._swap(lease, replace(lease.unit, lease=time.time() + self.seconds, frames=frames, rate=rate))

    def release(self, lease: Lease) -> None:
        """Give the unit back undone (this replica is stopping): another takes it at once."""
        if self._swap(lease, replace(Unit(), token=lease.unit.token, failures=lease.unit.failures,
                                     error=lease.unit.error)):
            log.info("video %s: %s handed back", lease.job.id, lease.name)

    def fail(self, lease: Lease, error: str) -> None:
        """Give the unit back as a failure: it is tried again until it has failed ``max_failures``
        times (then the next claim says Poisoned)."""
        self._swap(lease, replace(Unit(), token=lease.unit.token, failures=lease.unit.failures + 1, error=error))

    def finish(self, lease: Lease, frames: int = 0) -> bool:
        """Done, with the lease's token (its output file's); False when the lease is no longer ours."""
        return self._swap(lease, Unit("done", self.replica, 0.0, frames, token=lease.unit.token)) is not None


def progress(job: VideoJob, units: dict[str, Unit | None]) -> VideoJob:
    """``job`` with its progress summed over its segments: frames written, the rate of the
    replicas rendering now, segments done and who rendered them."""
    segments = [u for n, u in units.items() if segment_index(n) is not None and u is not None]
    done = [u for u in segments if u.state == "done"]
    now = time.time()
    return replace(job, frames_done=sum(u.frames for u in segments), segments_done=len(done),
                   rate=sum(u.rate for u in segments if u.state == "leased" and u.lease >= now),
                   rendered_by=dict(Counter(u.replica for u in done)))
