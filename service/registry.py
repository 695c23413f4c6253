"""Style registry: style codes (mean, std of relu4_1 and the image's RGB mean and covariance: 4 KB
each) keyed by a hash of the image bytes and the style size, in a bounded LRU, plus preset styles
encoded once at startup.

Only codes are kept, never a user's image. Uploads seen by /stylize share the cache (so the same
painting sent twice is encoded once) but are listed only once registered through POST /styles.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from model.adain import StyleCode
from model.images import IMAGE_SUFFIXES, InvalidImage, encode_image, open_image

log = logging.getLogger("adain.registry")


@dataclass
class StyleEntry:
    id: str
    code: StyleCode
    style_size: int
    kind: str  # "preset" | "uploaded"
    name: str | None = None
    registered: bool = False
    created: float = field(default_factory=time.time)
    thumbnail: bytes | None = None  # presets only: a small JPEG of our own image


def style_key(data: bytes, style_size: int) -> str:
    return hashlib.sha256(data + b"|%d" % style_size).hexdigest()[:24]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "style"


class StyleRegistry:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.presets: dict[str, StyleEntry] = {}
        self._lru: OrderedDict[str, StyleEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._lru)

    def get(self, style_id: str) -> StyleEntry | None:
        with self._lock:
            if style_id in self.presets:
                return self.presets[style_id]
            entry = self._lru.get(style_id)
            if entry is not None:
                self._lru.move_to_end(style_id)
            return entry

    def get_or_encode(
        self, data: bytes, style_size: int, encode: Callable[[], StyleCode],
        name: str | None = None, register: bool = False,
    ) -> tuple[StyleEntry, bool]:
        """The cached entry for these bytes at this size, encoding on a miss. Returns (entry, hit)."""
        key = style_key(data, style_size)
        with self._lock:
            entry = self._lru.get(key)
            hit = entry is not None
            if hit:
                self._lru.move_to_end(key)
                self.hits += 1
        if not hit:
            code = encode()  # outside the lock: encoding takes a while
            entry = StyleEntry(key, code, style_size, "uploaded")
            with self._lock:
                self.misses += 1
                entry = self._lru.setdefault(key, entry)
                self._lru.move_to_end(key)
                while len(self._lru) > self.capacity:
                    self._lru.popitem(last=False)
        if register:
            entry.registered = True
            entry.name = name or entry.name
        return entry, hit

    def listed(self) -> list[StyleEntry]:
        with self._lock:
            return list(self.presets.values()) + [e for e in self._lru.values() if e.registered]

    def delete(self, style_id: str) -> bool:
        with self._lock:
            return self._lru.pop(style_id, None) is not None

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
            except (InvalidImage, ValueError) as e:
                log.warning("skipping preset %s: %s", path.name, e)
                continue
            sid = _slug(path.stem)
            self.presets[sid] = StyleEntry(sid, code, style_size, "preset", name=re.sub(r"[-_]+", " ", path.stem),
                                           registered=True, thumbnail=encode_image(thumb, "jpeg", jpeg_quality=85))
        return len(self.presets)
