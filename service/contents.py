"""Content features kept between renders of the same photo (``ADAIN_CONTENT_CACHE_MB``; an
``Lru`` weighed in bytes: ``content_cache``).

The page's main loop is "same photo, move α / colours / weights / mask, look again": with the
photo's encoder output kept, such an update runs the decoder alone. An entry is keyed by the
tenant, the upload's bytes and the content size (never shared across tenants: a hit must not tell
one tenant what another sent), bounded in bytes, least recently used out first. Its key is also the
``content_id`` a later request may send instead of the file."""

from __future__ import annotations

import hashlib

from model.plan import ContentFeatures
from service.lru import Lru
from service.tenants import Caller


def content_id(data: bytes) -> str:
    """The id a request may send instead of the same content again (with the same content size)."""
    return hashlib.sha256(data).hexdigest()[:32]


def content_key(caller: Caller, content_size: int, cid: str) -> str:
    # the tenant in the key: another tenant's id is a miss, as for an id never seen
    return f"{caller.tenant}\0{content_size}\0{cid}"


def content_cache(capacity_bytes: int) -> Lru[ContentFeatures]:
    return Lru(capacity_bytes, weigh=lambda features: features.nbytes)
