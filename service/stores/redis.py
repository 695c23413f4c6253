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

from dataclasses import replace

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.stores.base import StoreDown, StoreFull, StyleEntry, StyleStore, Timing

PREFIX = "adain:"
# KEYS: value key, index; ARGV: index member, value, capacity. 1 = added, 0 = already there, -1 = full
ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""


class RedisStyles(StyleStore):
    backend = "redis"

    def __init__(self, url: str, capacity: int, timing: Timing | None = None) -> None:
        super().__init__(capacity, timing)
        self.client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0,
                                           retry=Retry(NoBackoff(), 1), health_check_interval=15)
        self.index = PREFIX + "styles"
        self._add = self.client.register_script(ADD)

    def key(self, style_id: str) -> str:
        return f"{PREFIX}style:{style_id}"

    def _call(self, op: str, fn):
        with self.timed(op):
            try:
                return fn()
            except redis.RedisError as e:
                raise StoreDown(f"redis: {type(e).__name__}") from None

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
