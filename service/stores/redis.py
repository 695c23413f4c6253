"""Registered styles in Redis (``ADAIN_REDIS_URL``), shared by every replica.

Keys: ``adain:style:{id}`` holds the value (service/stores/codec.py); the sorted set
``adain:styles`` holds every id's sort key (all scores 0, so members order lexically: by
registration time, then id) for listing and counting. Registration is one Lua script (the
capacity check, the value and the index change together); deletion one MULTI. Redis itself
persists with AOF (docker-compose runs it with --appendonly yes).

A Redis that cannot be reached makes every call raise StoreDown within about a second (short
socket timeouts, one retry so a connection dropped by a Redis restart is remade at once), and
the next call after Redis is back simply works: redis-py reconnects by itself."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.stores.base import StoreDown, StoreFull, StyleEntry, StyleStore, Timing
from service.stores.jobs import JobStore, VideoJob

PREFIX = "adain:"
# KEYS: value key, index; ARGV: index member, value, capacity. 1 = added, 0 = already there, -1 = full
ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""


def call(fn):
    """fn(), any Redis error as StoreDown (the service's 503)."""
    try:
        return fn()
    except redis.RedisError as e:
        raise StoreDown(f"redis: {type(e).__name__}") from None


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0, retry=Retry(NoBackoff(), 1),
                                health_check_interval=15)


class RedisStyles(StyleStore):
    backend = "redis"

    def __init__(self, url: str, capacity: int, timing: Timing | None = None) -> None:
        super().__init__(capacity, timing)
        self.client = connect(url)
        self.index = PREFIX + "styles"
        self._add = self.client.register_script(ADD)

    def key(self, style_id: str) -> str:
        return f"{PREFIX}style:{style_id}"

    def _call(self, op: str, fn):
        with self.timed(op):
            return call(fn)

    def add(self, entry: StyleEntry) -> StyleEntry:
        result = self._call("add", lambda: self._add(keys=[self.key(entry.id), self.index],
                                                      args=[entry.sort_key, entry.to_bytes(), self.capacity]))
        if result == -1:
            raise StoreFull(self.capacity)
        if result == 0:
            old = self.get(entry.id)
            if old is None:  # deleted meanwhile, or unreadable: register afresh
                self.delete(entry.id)
                return self.add(entry)
            if entry.name and entry.name != old.name:
                old = replace(old, name=entry.name)
                self._call("add", lambda: self.client.set(self.key(old.id), old.to_bytes(), xx=True))
            return old
        return entry

    def get(self, style_id: str) -> StyleEntry | None:
        return self.entry(style_id, self._call("get", lambda: self.client.get(self.key(style_id))))

    def delete(self, style_id: str) -> bool:
        def run() -> bool:
            entry = self.entry(style_id, self.client.get(self.key(style_id)))
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.key(style_id))
            if entry is not None:
                pipe.zrem(self.index, entry.sort_key)
            return bool(pipe.execute()[0])

        return self._call("delete", run)

    def page(self, after: str | None, limit: int) -> list[tuple[str, StyleEntry | None]]:
        def run() -> list[tuple[str, StyleEntry | None]]:
            keys = [m.decode() for m in self.client.zrangebylex(self.index, f"({after}" if after else "-", "+",
                                                                 start=0, num=limit)]
            ids = [k.split(":", 1)[1] for k in keys]
            values = self.client.mget([self.key(i) for i in ids]) if ids else []
            return [(k, self.entry(i, v)) for k, i, v in zip(keys, ids, values)]

        return self._call("list", run)

    def count(self) -> int:
        return int(self._call("count", lambda: self.client.zcard(self.index)))

    def ping(self) -> None:
        self._call("ping", self.client.ping)

    def close(self) -> None:
        self.client.close()


PIECE = 1024 * 1024  # results go into Redis and come out in pieces of this size


class RedisJobs(JobStore):
    """Video jobs in Redis: ``adain:video:{id}`` holds the record (JSON), ``adain:video:{id}:mp4``
    the result; both expire ``ttl`` s after the last write, so Redis itself forgets old jobs.
    Results are written with APPEND and read with GETRANGE a piece at a time, so neither side holds
    a whole clip in one command. (``folder`` is only this replica's work space.)"""

    backend = "redis"

    def __init__(self, url: str, folder: Path, ttl: float) -> None:
        super().__init__(folder, ttl)
        self.client = connect(url)
        self.ex = max(1, round(ttl))

    def key(self, job_id: str) -> str:
        return f"{PREFIX}video:{job_id}"

    def result_key(self, job_id: str) -> str:
        return self.key(job_id) + ":mp4"

    def put(self, job: VideoJob) -> None:
        call(lambda: self.client.set(self.key(job.id), job.to_json(), ex=self.ex))

    def update(self, job: VideoJob) -> bool:
        def run() -> bool:
            pipe = self.client.pipeline(transaction=True)
            pipe.set(self.key(job.id), job.to_json(), ex=self.ex, xx=True)
            pipe.expire(self.result_key(job.id), self.ex)
            return bool(pipe.execute()[0])

        return call(run)

    def get(self, job_id: str) -> VideoJob | None:
        return VideoJob.from_json(job_id, call(lambda: self.client.get(self.key(job_id))))

    def delete(self, job_id: str) -> bool:
        return bool(call(lambda: self.client.delete(self.key(job_id), self.result_key(job_id))))

    def keep_result(self, job_id: str, path: Path) -> int:
        key, size = self.result_key(job_id), 0
        call(lambda: self.client.delete(key))
        with open(path, "rb") as f:
            while piece := f.read(PIECE):
                call(lambda: self.client.append(key, piece))
                size += len(piece)
        call(lambda: self.client.expire(key, self.ex))
        path.unlink()
        return size

    def result_size(self, job_id: str) -> int | None:
        key = self.result_key(job_id)
        exists, size = call(lambda: self.client.pipeline().exists(key).strlen(key).execute())
        return int(size) if exists else None

    def read_result(self, job_id: str, start: int, end: int) -> Iterator[bytes]:
        key = self.result_key(job_id)
        for at in range(start, end + 1, PIECE):
            yield call(lambda: self.client.getrange(key, at, min(end, at + PIECE - 1)))

    def close(self) -> None:
        self.client.close()
