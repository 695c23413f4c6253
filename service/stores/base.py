"""What a style store holds and promises, whatever the backend.

A registered style is data: once ``add`` returns it stays until ``delete`` (traffic never evicts
it); a full store refuses new styles (``StoreFull``) instead of dropping old ones; a store that
cannot be reached says so (``StoreDown``, a 503 with Retry-After) instead of answering "not
registered". Listing is in registration order, paged by an opaque cursor."""

from __future__ import annotations

import base64
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from model.adain import StyleCode
from service.errors import ServiceError
from service.stores import codec

log = logging.getLogger("adain.store")
Timing = Callable[[str, float, bool], None]  # (operation, seconds, succeeded): for /metrics
RETRY_AFTER = 5  # seconds a client is told to wait while the store is down


@dataclass
class StyleEntry:
    id: str
    code: StyleCode
    style_size: int
    kind: str  # "preset" | "uploaded"
    name: str | None = None
    created: float = field(default_factory=time.time)
    thumbnail: bytes | None = None  # presets only: a small JPEG of our own image

    @property
    def sort_key(self) -> str:
        """Registration order: the creation time, fixed width, then the id (unique)."""
        return f"{self.created:020.6f}:{self.id}"

    def to_bytes(self) -> bytes:
        return codec.encode(self.code, {"id": self.id, "name": self.name, "style_size": self.style_size,
                                        "created": self.created})

    @classmethod
    def from_bytes(cls, blob: bytes) -> StyleEntry:
        code, f = codec.decode(blob)
        try:
            return cls(str(f["id"]), code, int(f["style_size"]), "uploaded", f.get("name"), float(f["created"]))
        except (KeyError, TypeError, ValueError) as e:
            raise codec.CorruptValue(f"bad fields {f!r}: {e}") from None


class StoreDown(ServiceError):
    status = 503

    def __init__(self, detail: str) -> None:
        super().__init__(f"the style store is unavailable ({detail}); retry shortly",
                         headers={"Retry-After": str(RETRY_AFTER)})


class StoreFull(ServiceError):
    status = 507

    def __init__(self, limit: int) -> None:
        super().__init__(f"the style store is full: {limit} styles are registered (ADAIN_MAX_REGISTERED_STYLES); "
                         "delete some (DELETE /styles/{id}) before registering more")


def encode_cursor(sort_key: str) -> str:
    return base64.urlsafe_b64encode(sort_key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise BadCursor() from None


class BadCursor(ServiceError):
    status = 422

    def __init__(self) -> None:
        super().__init__("cursor: not a cursor this server gave out (use next_cursor from the last page)")


class StyleStore(ABC):
    backend = "?"

    def __init__(self, capacity: int, timing: Timing | None = None) -> None:
        self.capacity = capacity
        self.timing = timing or (lambda op, seconds, ok: None)

    @contextmanager
    def timed(self, op: str) -> Iterator[None]:
        start, ok = time.perf_counter(), False
        try:
            yield
            ok = True
        finally:
            self.timing(op, time.perf_counter() - start, ok)

    def entry(self, style_id: str, blob: bytes | None) -> StyleEntry | None:
        """A stored value as an entry; a corrupt or foreign one is logged and skipped."""
        if blob is None:
            return None
        try:
            return StyleEntry.from_bytes(blob)
        except codec.CorruptValue as e:
            log.warning("style %r: skipping a stored value that is not a style code: %s", style_id, e)
            return None

    @abstractmethod
    def add(self, entry: StyleEntry) -> StyleEntry:
        """Register ``entry``; the same id again keeps the first registration (with a new name if
        one is given). StoreFull when at capacity."""

    @abstractmethod
    def get(self, style_id: str) -> StyleEntry | None: ...

    @abstractmethod
    def delete(self, style_id: str) -> bool: ...

    @abstractmethod
    def page(self, after: str | None, limit: int) -> list[tuple[str, StyleEntry | None]]:
        """Up to ``limit`` (sort key, entry) pairs in registration order after the sort key
        ``after``; the entry is None for a value that could not be read (logged)."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreDown when the store cannot be used."""

    def close(self) -> None:
        pass
