"""Registered styles in Redis (``ADAIN_REDIS_URL``), shared by every replica.

Keys: ``adain:style:{id}`` holds the value (service/stores/codec.py), with a Redis expiry when the
style has one; the sorted sets ``adain:styles`` (every style) and ``adain:styles:of:{tenant}``
(one tenant's) hold sort keys (all scores 0, so members order lexically: by registration time,
then id) for listing and counting; ``adain:styles:expiry`` scores ``{tenant}|{sort key}`` by
expiry time (ms) so the indexes are swept when a value expires. Registration is one Lua script (the
sweep, the capacity and quota checks, the value and the index changes together); deletion one
MULTI. The scripts name keys they derive (a tenant's index), so they need one Redis, not a
cluster. Redis itself persists with AOF (docker-compose runs it with --appendonly yes).

A store written before tenants has no per-tenant indexes: the first call after an upgrade builds
them from the values (their owner: ``local``) and records ``adain:schema`` = 2.

A Redis that cannot be reached makes every call raise StoreDown within about a second (short
socket timeouts, one retry so a connection dropped by a Redis restart is remade at once), and
the next call after Redis is back simply works: redis-py reconnects by itself."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.stores.base import (QuotaFull, StoreDown, StoreFull, StoreOutOfMemory, StyleEntry, StyleStore, Timing,
                                 merged)
from service.stores.jobs import ACTIVE, JobStore, VideoJob

PREFIX = "adain:"
# A script that writes says so in a shebang (Redis 7), so Redis refuses it whole while at maxmemory
# (noeviction) instead of letting it past its first write: without flags a script that has written
# once may go on writing whatever the memory
WRITES = "#!lua\n"
# KEYS: the new job's record, the active index; ARGV: the record, its created time, its id, its
# tenant, the limit, the records' key prefix (one Redis, not a cluster), then the active states.
# The job is written (queued, so without expiry) only while its tenant has fewer than the limit.
PUT_WITHIN = WRITES + """
local active = {}
for i = 7, #ARGV do active[ARGV[i]] = true end
local n = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local value = redis.call('GET', ARGV[6] .. id)
  if value then
    local job = cjson.decode(value)
    if job.tenant == ARGV[4] and active[job.state] then n = n + 1 end
  end
end
if n >= tonumber(ARGV[5]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""
SCHEMA = 2
# the indexes' members whose value expired before ``now`` (unix ms), removed
SWEEP = """
local function sweep(index, expiry, now, prefix)
  local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
  for _, m in ipairs(gone) do
    local bar = string.find(m, '|', 1, true)
    local sk = string.sub(m, bar + 1)
    redis.call('ZREM', index, sk)
    redis.call('ZREM', prefix .. 'styles:of:' .. string.sub(m, 1, bar - 1), sk)
    redis.call('DEL', prefix .. 'style:' .. string.sub(sk, string.find(sk, ':', 1, true) + 1))
  end
  redis.call('ZREMRANGEBYSCORE', expiry, '-inf', now)
  return #gone
end
"""
# KEYS: value key, index, tenant's index, expiry set; ARGV: now (ms), prefix, sort key, value, capacity,
# tenant's quota, expiry in ms ('' = none), expiry member. 1 = added, 0 = already there, -1 = full,
# -2 = the tenant's quota is full
ADD = WRITES + SWEEP + """
sweep(KEYS[2], KEYS[4], ARGV[1], ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return -1 end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[6]) then return -2 end
redis.call('SET', KEYS[1], ARGV[4])
if ARGV[7] ~= '' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[7])
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[8])
end
redis.call('ZADD', KEYS[2], 0, ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[3])
return 1
"""
CLEAN = "#!lua flags=allow-oom\n" + SWEEP + "return sweep(KEYS[1], KEYS[2], ARGV[1], ARGV[2])"  # frees memory


def ms(t: float) -> int:
    return int(t * 1000)


def call(fn):
    """fn(), any Redis error as StoreDown (the service's 503); a write refused at maxmemory as
    StoreOutOfMemory (507)."""
    try:
        return fn()
    except redis.exceptions.OutOfMemoryError:
        raise StoreOutOfMemory() from None
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
        self.index, self.expiry = PREFIX + "styles", PREFIX + "styles:expiry"
        self._add = self.client.register_script(ADD)
        self._clean = self.client.register_script(CLEAN)
        self._upgraded = threading.Event()

    def key(self, style_id: str) -> str:
        return f"{PREFIX}style:{style_id}"

    def owner_index(self, owner: str) -> str:
        return f"{PREFIX}styles:of:{owner}"

    def _call(self, op: str, fn):
        with self.timed(op):
            if not self._upgraded.is_set():
                call(self._upgrade)
            return call(fn)

    def _upgrade(self) -> None:
        """Per-tenant indexes for a store written before tenants (idempotent: replicas may race)."""
        if int(self.client.get(PREFIX + "schema") or 1) < SCHEMA:
            after = "-"
            while keys := [m.decode() for m in self.client.zrangebylex(self.index, after, "+", start=0, num=500)]:
                ids = [k.split(":", 1)[1] for k in keys]
                pipe = self.client.pipeline(transaction=False)
                for k, i, v in zip(keys, ids, self.client.mget([self.key(i) for i in ids])):
                    entry = self.entry(i, v)
                    if entry is not None:
                        pipe.zadd(self.owner_index(entry.owner), {k: 0})
                pipe.execute()
                after = f"({keys[-1]}"
            self.client.set(PREFIX + "schema", SCHEMA)
        self._upgraded.set()

    def add(self, entry: StyleEntry, owner_limit: int) -> StyleEntry:
        while True:
            result = self._call("add", lambda: self._add(
                keys=[self.key(entry.id), self.index, self.owner_index(entry.owner), self.expiry],
                args=[ms(time.time()), PREFIX, entry.sort_key, entry.to_bytes(), self.capacity, owner_limit,
                      "" if entry.expires is None else ms(entry.expires), self._member(entry)]))
            if result == -1:
                raise StoreFull(self.capacity)
            if result == -2:
                raise QuotaFull(entry.owner, owner_limit)
            if result == 1:
                return entry
            old = self.get(entry.id)
            if old is not None:
                new = merged(old, entry)
                if new != old:
                    self._call("add", lambda: self._rewrite(new))
                return new
            self.delete(entry.id)  # expired or unreadable meanwhile: register afresh

    def _member(self, entry: StyleEntry) -> str:
        return f"{entry.owner}|{entry.sort_key}"

    def _rewrite(self, entry: StyleEntry) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.key(entry.id), entry.to_bytes(), xx=True)
        if entry.expires is None:
            pipe.zrem(self.expiry, self._member(entry))
        else:
            pipe.pexpireat(self.key(entry.id), ms(entry.expires))
            pipe.zadd(self.expiry, {self._member(entry): ms(entry.expires)})
        pipe.execute()

    def get(self, style_id: str) -> StyleEntry | None:
        return self.entry(style_id, self._call("get", lambda: self.client.get(self.key(style_id))))

    def delete(self, style_id: str) -> bool:
        def run() -> bool:
            entry = self.entry(style_id, self.client.get(self.key(style_id)))
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.key(style_id))
            if entry is not None:
                pipe.zrem(self.index, entry.sort_key)
                pipe.zrem(self.owner_index(entry.owner), entry.sort_key)
                pipe.zrem(self.expiry, self._member(entry))
            return bool(pipe.execute()[0])

        return self._call("delete", run)

    def page(self, owner: str | None, after: str | None, limit: int) -> list[tuple[str, StyleEntry | None]]:
        index = self.index if owner is None else self.owner_index(owner)

        def run() -> list[tuple[str, StyleEntry | None]]:
            self._clean(keys=[self.index, self.expiry], args=[ms(time.time()), PREFIX])
            keys = [m.decode() for m in self.client.zrangebylex(index, f"({after}" if after else "-", "+",
                                                                 start=0, num=limit)]
            ids = [k.split(":", 1)[1] for k in keys]
            values = self.client.mget([self.key(i) for i in ids]) if ids else []
            return [(k, self.entry(i, v)) for k, i, v in zip(keys, ids, values)]

        return self._call("list", run)

    def count(self, owner: str | None = None) -> int:
        index = self.index if owner is None else self.owner_index(owner)

        def run() -> int:
            self._clean(keys=[self.index, self.expiry], args=[ms(time.time()), PREFIX])
            return int(self.client.zcard(index))

        return self._call("count", run)

    def ping(self) -> None:
        self._call("ping", self.client.ping)

    def close(self) -> None:
        self.client.close()


# KEYS: the units hash, the job's record, its set of file keys; ARGV: unit, old value, new value,
# expiry (s). 1 = swapped (and the job's keys kept alive), 0 = the unit is not the old value, -1 = no job.
SWAP = WRITES + """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


class RedisJobs(JobStore):
    """Video jobs' state in Redis: ``adain:video:{id}`` holds the record (JSON), ``:units`` its
    units of work (a hash, dropped when the job ends); a record expires ``ttl`` s after its job
    ended (never while queued or running), so Redis itself forgets old jobs.
    ``adain:videos:active`` lists the unfinished ones (a sorted set by creation time). The files are
    in the shared ``folder`` (JobStore), swept by the replicas when their job is gone."""

    backend = "redis"

    def __init__(self, url: str, folder: Path, ttl: float) -> None:
        super().__init__(folder, ttl)
        self.client = connect(url)
        self.ex = max(1, round(ttl))
        self.active_key = PREFIX + "videos:active"
        self._swap = self.client.register_script(SWAP)
        self._put_within = self.client.register_script(PUT_WITHIN)

    def key(self, job_id: str) -> str:
        return f"{PREFIX}video:{job_id}"

    def _ex(self, job: VideoJob) -> int | None:
        return None if self.expires(job) is None else self.ex

    def units_key(self, job_id: str) -> str:
        return self.key(job_id) + ":units"

    def put(self, job: VideoJob, limit: int | None = None) -> bool:
        if limit is not None:  # counted and written in one script: replicas cannot all pass the count
            return call(lambda: self._put_within(keys=[self.key(job.id), self.active_key],
                                                 args=[job.to_json(), job.created, job.id, job.tenant, limit,
                                                       self.key(""), *ACTIVE])) == 1

        def run() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.set(self.key(job.id), job.to_json(), ex=self._ex(job))
            self._mark(pipe, job)
            pipe.execute()

        call(run)
        return True

    def _mark(self, pipe, job: VideoJob) -> None:
        if job.state in ACTIVE:
            pipe.zadd(self.active_key, {job.id: job.created})
        else:
            pipe.zrem(self.active_key, job.id)

    def update(self, job: VideoJob) -> bool:
        def run() -> bool:
            pipe = self.client.pipeline(transaction=True)
            pipe.set(self.key(job.id), job.to_json(), ex=self._ex(job), xx=True)  # no ex: no expiry
            written = pipe.execute()[0]
            if written or job.state not in ACTIVE:
                pipe = self.client.pipeline(transaction=True)
                self._mark(pipe, job)
                pipe.execute()
            return bool(written)

        return call(run)

    def get(self, job_id: str) -> VideoJob | None:
        return VideoJob.from_json(job_id, call(lambda: self.client.get(self.key(job_id))))

    def delete(self, job_id: str) -> bool:
        def run() -> bool:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.key(job_id))
            pipe.delete(self.units_key(job_id))
            pipe.zrem(self.active_key, job_id)
            return bool(pipe.execute()[0])

        found = call(run)
        self.remove_files(job_id)
        return found

    def drop_units(self, job_id: str) -> None:
        call(lambda: self.client.delete(self.units_key(job_id)))

    def active(self) -> list[str]:
        def run() -> list[str]:
            ids = [i.decode() for i in self.client.zrange(self.active_key, 0, -1)]
            if not ids:
                return ids
            gone = [i for i, there in zip(ids, self._exist(ids)) if not there]
            if gone:  # deleted (the record is gone): no longer anyone's work
                self.client.zrem(self.active_key, *gone)
            return [i for i in ids if i not in gone]

        return call(run)

    def _exist(self, ids: list[str]) -> list[bool]:
        pipe = self.client.pipeline()
        for i in ids:
            pipe.exists(self.key(i))
        return [bool(n) for n in pipe.execute()]

    def put_units(self, job_id: str, units: dict[str, str]) -> None:
        call(lambda: self.client.hset(self.units_key(job_id), mapping=units))  # dropped when the job ends

    def units(self, job_id: str) -> dict[str, str]:
        raw = call(lambda: self.client.hgetall(self.units_key(job_id)))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def swap_unit(self, job_id: str, name: str, old: str, new: str) -> bool:
        return call(lambda: self._swap(keys=[self.units_key(job_id), self.key(job_id)], args=[name, old, new])) == 1

    def close(self) -> None:
        self.client.close()
