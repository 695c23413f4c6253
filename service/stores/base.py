"""What a style store holds and promises, whatever the backend.

A registered style is data: once ``add`` returns it stays until ``delete`` (traffic never evicts
it); a full store refuses new styles (``StoreFull``) instead of dropping old ones; a store that
cannot be reached says so (``StoreDown``, a 503 with Retry-After) instead of answering "not
registered". Listing is in registration order, paged by an opaque cursor.

Every style has an owner, the tenant that registered it (values written before tenants existed
read as the ``local`` tenant's). Who may see what is not the store's business: it lists one
owner's styles or all of them, and the registry decides (``service.tenants.may_access``). A style
may carry an expiry (``ttl`` at registration): after it the style is gone, on every backend."""

from __future__ import annotations

import base64
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from model.adain import StyleCode
from service.errors import ServiceError
from service.stores import codec
from service.tenants import LOCAL

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
    thumbnail: bytes | None = None  # a small JPEG (presets: of our image; uploads: ADAIN_KEEP_STYLE_THUMBNAILS)
    owner: str = LOCAL  # the tenant that registered it (presets: everyone's)
    expires: float | None = None  # unix time after which it is gone; None = kept until deleted

    @property
    def sort_key(self) -> str:
        """Registration order: the creation time, fixed width, then the id (unique)."""
        return f"{self.created:020.6f}:{self.id}"

    def to_bytes(self) -> bytes:
        return codec.encode(self.code, {"id": self.id, "name": self.name, "style_size": self.style_size,
                                        "created": self.created, "owner": self.owner, "expires": self.expires},
                            self.thumbnail)

    @classmethod
    def from_bytes(cls, blob: bytes) -> StyleEntry:
        code, f, thumbnail = codec.decode(blob)
        try:
            expires = f.get("expires")
            return cls(str(f["id"]), code, int(f["style_size"]), "uploaded", f.get("name"), float(f["created"]),
                       thumbnail=thumbnail, owner=str(f.get("owner") or LOCAL),
                       expires=None if expires is None else float(expires))
        except (KeyError, TypeError, ValueError) as e:
            raise codec.CorruptValue(f"bad fields {f!r}: {e}") from None


class StoreDown(ServiceError):
    status = 503

    def __init__(self, detail: str) -> None:
        super().__init__(f"the style store is unavailable ({detail}); retry shortly",
                         headers={"Retry-After": str(RETRY_AFTER)})


class StoreOutOfMemory(StoreDown):
    """Redis at its ``maxmemory`` with ``noeviction`` refuses writes: nothing is evicted (styles are
    data), the write is refused, reads go on. A StoreDown, so the video workers retry later."""

    status = 507

    def __init__(self) -> None:
        ServiceError.__init__(self, "the store is out of memory (Redis maxmemory); nothing was written: delete "
                                    "styles or video jobs, or ask the operator for more", headers={"Retry-After": "60"})


class StoreFull(ServiceError):
    status = 507

    def __init__(self, limit: int) -> None:
        super().__init__(f"the style store is full: {limit} styles are registered (ADAIN_MAX_REGISTERED_STYLES); "
                         "delete some (DELETE /styles/{id}) before registering more")


class QuotaFull(ServiceError):
    status = 507

    def __init__(self, tenant: str, limit: int) -> None:
        super().__init__(f"tenant {tenant!r} has {limit} registered styles, its quota (ADAIN_MAX_STYLES_PER_TENANT or "
                         "its max_styles in the keys file): delete some (DELETE /styles/{id}) before registering more")


def merged(old: StyleEntry, new: StyleEntry) -> StyleEntry:
    """A registration of a style that exists: the first registration stays (id, time, code),
    with the new name if one is given, the longer life (no expiry wins) and a thumbnail if the
    first had none."""
    expires = None if old.expires is None or new.expires is None else max(old.expires, new.expires)
    return replace(old, name=new.name or old.name, expires=expires, thumbnail=old.thumbnail or new.thumbnail)


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
        """A stored value as an entry; a corrupt or foreign one is logged and skipped, an expired
        one (not swept yet) is None."""
        if blob is None:
            return None
        try:
            entry = StyleEntry.from_bytes(blob)
        except codec.CorruptValue as e:
            log.warning("style %r: skipping a stored value that is not a style code: %s", style_id, e)
            return None
        return None if entry.expires is not None and entry.expires <= time.time() else entry

    @abstractmethod
    def add(self, entry: StyleEntry, owner_limit: int) -> StyleEntry:
        """Register ``entry``; the same id again keeps the first registration (``merged``).
        StoreFull when the store is at capacity, QuotaFull when the owner has ``owner_limit``."""

    @abstractmethod
    def get(self, style_id: str) -> StyleEntry | None:
        """The entry, whoever owns it; None when unknown or expired."""

    @abstractmethod
    def delete(self, style_id: str) -> bool: ...

    @abstractmethod
    def page(self, owner: str | None, after: str | None, limit: int) -> list[tuple[str, StyleEntry | None]]:
        """Up to ``limit`` (sort key, entry) pairs of ``owner``'s styles (everyone's for None) in
        registration order after the sort key ``after``; the entry is None for a value that could
        not be read (logged)."""

    @abstractmethod
    def count(self, owner: str | None = None) -> int: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreDown when the store cannot be used."""

    def close(self) -> None:
        pass
