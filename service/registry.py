"""Where a style id or upload finds its code: the presets (encoded once at startup from the presets
folder), the registered styles (a durable store shared by every replica: service/stores), and a
bounded per-process cache of the codes of styles sent inline to /stylize.

The two kinds of state stay apart: the cache is keyed by a hash of the tenant, the image bytes and
the style size and evicts by LRU, and nothing in it is registered; a registered style lives in the
store until it is deleted or expires. Only codes are kept (mean, std of relu4_1 and the RGB mean
and covariance: 4 KB each), never a user's image.

Registered styles belong to a tenant: this is where every lookup, listing and deletion applies
``may_access``, so another tenant's id is exactly an unknown id. Ids are hashes that include the
tenant, so the same image registered by two tenants gets two ids and an id reveals nothing."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from model.adain import StyleCode
from model.errors import InputError
from model.images import IMAGE_SUFFIXES, open_image, resize_shorter, small_jpeg
from service.ids import is_style_id
from service.lru import Lru
from service.stores import StyleEntry, StyleStore
from service.stores.base import BadCursor, decode_cursor, encode_cursor
from service.tenants import LOCAL, Caller, may_access

log = logging.getLogger("adain.registry")


def style_key(data: bytes, style_size: int, tenant: str = LOCAL) -> str:
    # the local tenant's ids are those from before tenants, so re-registering finds them
    salt = b"" if tenant == LOCAL else tenant.encode() + b"\0"
    return hashlib.sha256(salt + data + b"|%d" % style_size).hexdigest()[:24]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower())[:128].strip("-") or "style"  # the shape of service.ids


class StyleRegistry:
    def __init__(self, store: StyleStore, cache_size: int) -> None:
        self.store = store
        self.presets: dict[str, StyleEntry] = {}
        # the presets' own images (the server's files, at most the default style size), so a
        # request can recolour a preset to its photo (preserve_color); uploads keep only codes
        self.preset_images: dict[str, Image.Image] = {}
        self.cache: Lru[StyleCode] = Lru(cache_size)  # inline uploads' codes (registered styles are not in it)

    def cached(self, caller: Caller, data: bytes, style_size: int) -> StyleCode | None:
        """The cached code of an inline upload, or None. Per tenant: a hit must not tell one
        tenant what another sent."""
        return self.cache.get(style_key(data, style_size, caller.tenant))

    def keep(self, caller: Caller, data: bytes, style_size: int, code: StyleCode) -> None:
        """Cache the code of an inline upload (the least recently used goes beyond the capacity)."""
        self.cache.put(style_key(data, style_size, caller.tenant), code)

    def register(self, caller: Caller, data: bytes, style_size: int, code: StyleCode,
                 name: str | None = None, ttl: float | None = None, thumbnail: bytes | None = None) -> StyleEntry:
        """Register an upload's ``code`` as ``caller``'s (the same bytes at the same size: the same
        id; a registration never shortens a style's life)."""
        entry = StyleEntry(style_key(data, style_size, caller.tenant), code, style_size, "uploaded", name,
                           thumbnail=thumbnail, owner=caller.tenant, expires=None if ttl is None else time.time() + ttl)
        return self.store.add(entry, caller.limits.max_styles)

    def get(self, caller: Caller, style_id: str) -> StyleEntry | None:
        """A preset or a registered style ``caller`` may use; None when neither (StoreDown when
        the store is down)."""
        if style_id in self.presets:
            return self.presets[style_id]
        if not is_style_id(style_id):
            return None
        entry = self.store.get(style_id)
        return entry if entry is not None and may_access(caller, entry.owner) else None

    def source(self, entry: StyleEntry, recolour: bool) -> Image.Image | StyleCode:
        """What a request renders a looked-up style from: its code, or, for a preset to recolour to
        the content (preserve_color), its image."""
        return self.preset_images[entry.id] if recolour and entry.kind == "preset" else entry.code

    def delete(self, caller: Caller, style_id: str) -> bool:
        return self.get(caller, style_id) is not None and self.store.delete(style_id)

    def page(self, caller: Caller, limit: int, cursor: str | None = None,
             tenant: str | None = None) -> tuple[list[StyleEntry], str | None]:
        """Presets, then ``caller``'s registered styles in registration order (an admin's: every
        tenant's, or ``tenant``'s): ``limit`` of them after ``cursor``, and the cursor of the next
        page (None after the last)."""
        owner = tenant if caller.is_admin else caller.tenant
        where = decode_cursor(cursor) if cursor else "p:0"
        kind, _, pos = where.partition(":")
        out: list[StyleEntry] = []
        after = pos or None
        if kind == "p":
            if not pos.isdigit():
                raise BadCursor()
            start = int(pos)
            out = list(self.presets.values())[start:start + limit]
            if start + len(out) < len(self.presets):
                return out, encode_cursor(f"p:{start + len(out)}")
            after = None
        elif kind != "s":
            raise BadCursor()
        room = limit - len(out)
        if room == 0:
            return out, encode_cursor("s:")
        rows = self.store.page(owner, after, room + 1)  # one more says whether a next page exists
        out += [e for _, e in rows[:room] if e is not None]
        return out, encode_cursor(f"s:{rows[room - 1][0]}") if len(rows) > room else None

    def load_presets(self, folder: Path, encode: Callable[[Image.Image], StyleCode], style_size: int) -> int:
        """Encode every image in ``folder`` once (decoded once); ids are slugs of the file names."""
        if not folder.is_dir():
            return 0
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                img = open_image(path)
                code = encode(img)
            except InputError as e:
                log.warning("skipping preset %s: %s", path.name, e)
                continue
            sid = _slug(path.stem)
            self.preset_images[sid] = resize_shorter(img, style_size) if style_size else img
            self.presets[sid] = StyleEntry(sid, code, style_size, "preset", name=re.sub(r"[-_]+", " ", path.stem),
                                           thumbnail=small_jpeg(img, 256))
        return len(self.presets)
