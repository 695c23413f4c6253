"""Where a style id or upload finds its code: the presets (encoded once at startup from the presets
folder), the registered styles (a durable store shared by every replica: service/stores), and a
bounded per-process cache of the codes of styles sent inline to /stylize.

The two kinds of state stay apart: the cache is keyed by a hash of the image bytes and the style
size and evicts by LRU, and nothing in it is registered; a registered style lives in the store
until it is deleted. Only codes are kept (mean, std of relu4_1 and the RGB mean and covariance:
4 KB each), never a user's image."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from model.adain import StyleCode
from model.errors import InputError
from model.images import IMAGE_SUFFIXES, encode_image, open_image
from service.stores import StyleEntry, StyleStore
from service.stores.base import BadCursor, decode_cursor, encode_cursor

log = logging.getLogger("adain.registry")


def style_key(data: bytes, style_size: int) -> str:
    return hashlib.sha256(data + b"|%d" % style_size).hexdigest()[:24]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "style"


class StyleRegistry:
    def __init__(self, store: StyleStore, cache_size: int) -> None:
        self.store = store
        self.capacity = cache_size
        self.presets: dict[str, StyleEntry] = {}
        self._cache: OrderedDict[str, StyleCode] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    def code(self, data: bytes, style_size: int, encode: Callable[[], StyleCode]) -> tuple[StyleCode, bool]:
        """The code of an inline upload through the cache, encoding on a miss: (code, hit)."""
        key = style_key(data, style_size)
        with self._lock:
            code = self._cache.get(key)
            if code is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return code, True
        code = encode()  # outside the lock: encoding takes a while
        with self._lock:
            self.misses += 1
            self._cache[key] = code
            self._cache.move_to_end(key)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return code, False

    def register(self, data: bytes, style_size: int, encode: Callable[[], StyleCode],
                 name: str | None = None) -> StyleEntry:
        """Register an upload in the store (the same bytes at the same size: the same id)."""
        code, _ = self.code(data, style_size, encode)
        return self.store.add(StyleEntry(style_key(data, style_size), code, style_size, "uploaded", name))

    def get(self, style_id: str) -> StyleEntry | None:
        """A preset or a registered style; None when neither (StoreDown when the store is down)."""
        return self.presets.get(style_id) or self.store.get(style_id)

    def delete(self, style_id: str) -> bool:
        return self.store.delete(style_id)

    def page(self, limit: int, cursor: str | None = None) -> tuple[list[StyleEntry], str | None]:
        """Presets, then registered styles in registration order: ``limit`` of them after
        ``cursor``, and the cursor of the next page (None after the last)."""
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
        rows = self.store.page(after, room + 1)  # one more says whether a next page exists
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
                thumb = img.copy()
                thumb.thumbnail((256, 256))
            except InputError as e:
                log.warning("skipping preset %s: %s", path.name, e)
                continue
            sid = _slug(path.stem)
            self.presets[sid] = StyleEntry(sid, code, style_size, "preset", name=re.sub(r"[-_]+", " ", path.stem),
                                           thumbnail=encode_image(thumb, "jpeg", jpeg_quality=85))
        return len(self.presets)
