"""Decoders as versions: a store of named decoders that every replica reads, the default and a
canary, and the few loaded at once.

The store is a folder (``ADAIN_MODELS_DIR``, a volume shared by the replicas and the training job):
``NAME/decoder.safetensors`` and ``NAME/card.json`` per version, and ``rollout.json`` naming the
default and, optionally, a candidate that a share of requests without an explicit ``decoder`` try
first (a canary). The shipped decoder is always there as ``v7``. Files are written whole and renamed
into place, so a replica never reads half a version or half a rollout; replicas read the rollout
again when its file changes, so a new default needs no restart. Only safetensors are stored (a
reference ``decoder.pth`` is converted on import, read tensors-only): nothing in the store executes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from model.atomic import write_atomic
from model.decoder import Decoder, load_decoder, load_state, save_decoder
from model.stylizer import Stylizer
from service.errors import BadRequest
from service.lru import Lru
from service.settings import Settings

SHIPPED = "v7"  # the name of weights/decoder.safetensors in every store
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class BadVersion(ValueError):
    """An import that is not a decoder of the AdaIN architecture, or a name that cannot be one."""


@dataclass(frozen=True)
class Rollout:
    default: str = SHIPPED
    candidate: str | None = None
    percent: float = 0.0  # of requests without an explicit decoder that go to the candidate


class ModelStore:
    def __init__(self, root: Path, shipped: Path) -> None:
        self.root, self.shipped = root, shipped
        self._rollout: tuple[tuple[int, int, int], Rollout] = ((0, 0, 0), Rollout())

    @classmethod
    def of(cls, settings: Settings, root: Path | None = None) -> ModelStore:
        """The store the settings name (``root`` given on a command line wins): ADAIN_MODELS_DIR,
        else STATE_DIR/models; ADAIN_DECODER is its v7."""
        return cls(root or settings.models_dir or settings.state_dir / "models", Path(settings.decoder))

    def path(self, name: str) -> Path | None:
        if name == SHIPPED:
            return self.shipped
        if not NAME.match(name):
            return None
        path = self.root / name / "decoder.safetensors"
        return path if path.is_file() else None

    def card(self, name: str) -> dict:
        if name == SHIPPED:
            return {"name": SHIPPED, "source": "the shipped decoder (weights/MODEL_CARD.md)"}
        try:
            return json.loads((self.root / name / "card.json").read_text())
        except (OSError, ValueError):
            return {"name": name}

    def names(self) -> list[str]:
        found = sorted(p.parent.name for p in self.root.glob("*/decoder.safetensors")) if self.root.is_dir() else []
        return [SHIPPED, *[n for n in found if n != SHIPPED and NAME.match(n)]]

    def rollout(self) -> Rollout:
        """The default and canary as the store says now (read again when the file changes)."""
        path = self.root / "rollout.json"
        try:
            st = path.stat()
        except OSError:
            return Rollout()
        seen = (st.st_mtime_ns, st.st_ino, st.st_size)  # a rename gives a new inode, whatever the clock
        if seen != self._rollout[0]:
            try:
                self._rollout = (seen, Rollout(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                return self._rollout[1]  # a damaged file: keep serving what was read last
        return self._rollout[1]

    def set_rollout(self, rollout: Rollout) -> None:
        for name in filter(None, (rollout.default, rollout.candidate)):
            if self.path(name) is None:
                raise BadVersion(f"no version {name!r} in {self.root} (adain models list)")
        if not 0 <= rollout.percent <= 100:
            raise BadVersion(f"--canary must be a percentage from 0 to 100, got {rollout.percent:g}")
        write_atomic(self.root / "rollout.json", lambda tmp: tmp.write_text(json.dumps(rollout.__dict__)))

    def import_decoder(self, source: Path, name: str, card: dict | None = None) -> Path:
        """Check ``source`` (safetensors, a reference ``decoder.pth`` or a training checkpoint) is a
        decoder of the reference architecture and store it as ``name``: safetensors and a card."""
        if not NAME.match(name) or name == SHIPPED:
            raise BadVersion(f"a version name is 1-64 of a-z 0-9 . _ - (not {SHIPPED!r}); got {name!r}")
        if (self.root / name).exists():
            raise BadVersion(f"version {name!r} exists; versions are never overwritten: import under a new name")
        try:
            decoder = Decoder()
            decoder.load_state_dict(load_state(source)[0])
        except Exception as e:  # noqa: BLE001 - whatever the file is, the answer is "not a decoder"
            raise BadVersion(f"{source} is not an AdaIN decoder ({type(e).__name__}: {str(e)[:300]})") from None
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}."))
        weights = save_decoder(decoder, tmp, "safetensors")
        meta = {"name": name, "imported_from": source.name, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
                "created": time.time(), **(card or {})}
        (tmp / "card.json").write_text(json.dumps(meta, indent=2))
        os.replace(tmp, self.root / name)
        return self.root / name / "decoder.safetensors"


class Decoders:
    """The versions a request may ask for, each a Stylizer sharing the encoder: at most ``size``
    loaded (least recently used out), the store's default and canary chosen per request."""

    def __init__(self, store: ModelStore, base: Stylizer, size: int) -> None:
        self.store, self.base = store, base
        self._loaded: Lru[Stylizer] = Lru(size)

    def choose(self, requested: str | None) -> str:
        """The version a request runs with: the one it names (400 when unknown), else the
        rollout's default, or its candidate for the canary's share."""
        if requested is not None:
            if self.store.path(requested) is None:
                raise BadRequest(f"decoder: no version {requested!r}; GET /models lists them")
            return requested
        r = self.store.rollout()
        if r.candidate and random.random() * 100 < r.percent and self.store.path(r.candidate) is not None:
            return r.candidate
        return r.default if self.store.path(r.default) is not None else SHIPPED

    def stylizer(self, name: str) -> Stylizer:
        if name == SHIPPED:
            return self.base  # the decoder the process started with (ADAIN_DECODER, or one handed to it)
        st = self._loaded.get(name)
        if st is None:
            path = self.store.path(name)
            if path is None:
                raise BadRequest(f"decoder: no version {name!r}; GET /models lists them")
            st = self.base.with_decoder(load_decoder(path))
            self._loaded.put(name, st)
        return st
