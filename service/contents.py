"""Content features kept between renders of the same photo (``ADAIN_CONTENT_CACHE_MB``).

The page's main loop is "same photo, move α / colours / weights / mask, look again": with the
photo's encoder output kept, such an update runs the decoder alone. An entry is keyed by the
tenant, the upload's bytes and the content size (never shared across tenants: a hit must not tell
one tenant what another sent), bounded in bytes, least recently used out first. Its key is also the
``content_id`` a later request may send instead of the file."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from model.plan import ContentFeatures
from service.tenants import Caller


def content_id(data: bytes) -> str:
    """The id a request may send instead of the same content again (with the same content size)."""
    return hashlib.sha256(data).hexdigest()[:32]


def content_key(caller: Caller, content_size: int, cid: str) -> str:
    # the tenant in the key: another tenant's id is a miss, as for an id never seen
    return f"{caller.tenant}\0{content_size}\0{cid}"


class ContentCache:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self._entries: OrderedDict[str, ContentFeatures] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def get(self, key: str) -> ContentFeatures | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def fits(self, nbytes: int) -> bool:
        return nbytes <= self.capacity

    def put(self, key: str, entry: ContentFeatures) -> None:
        """Keep ``entry`` (one larger than the whole cache is not kept); the least recently used
        go until the rest fits."""
        if not self.fits(entry.nbytes):
            return
        with self._lock:
            old = self._entries.pop(key, None)
            self.bytes -= old.nbytes if old is not None else 0
            self._entries[key] = entry
            self.bytes += entry.nbytes
            while self.bytes > self.capacity:
                _, dropped = self._entries.popitem(last=False)
                self.bytes -= dropped.nbytes
