"""A least-recently-used map bounded by the summed weight of its values: the inline style codes
(one each), kept content features (their bytes) and loaded decoder versions (one each)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class Lru(Generic[V]):
    """Thread-safe; counts hits and misses (for /metrics). A value heavier than the whole capacity
    is not kept; otherwise the least recently used go until the rest fits."""

    def __init__(self, capacity: int, weigh: Callable[[V], int] = lambda value: 1) -> None:
        self.capacity, self.weigh = capacity, weigh
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self.weight = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: str) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def fits(self, weight: int) -> bool:
        return weight <= self.capacity

    def put(self, key: str, value: V) -> None:
        if not self.fits(self.weigh(value)):
            return
        with self._lock:
            old = self._items.pop(key, None)
            self.weight += self.weigh(value) - (self.weigh(old) if old is not None else 0)
            self._items[key] = value
            while self.weight > self.capacity:
                _, dropped = self._items.popitem(last=False)
                self.weight -= self.weigh(dropped)
