"""Who is calling: API keys become tenants.

A tenant is a name, a role (``user`` or ``admin``) and its limits. Tenants come from
``ADAIN_API_KEYS`` (each key its own tenant, named ``key-`` + a hash prefix, never the key), from a
keys file (``ADAIN_KEYS_FILE``, TOML, below), or, with neither, there is one tenant: ``local``.
Keys are only ever held as SHA-256 digests: a key a caller sends is hashed and looked up.

The keys file::

    [[tenant]]
    name = "acme"                        # letters, digits, . _ - (shown in logs and metrics)
    keys = ["<sha256 hex of the key>"]   # one or two: two while a key is being rotated
    role = "user"                        # or "admin": lists and deletes every tenant's styles
    rate_limit = "5/second;100/minute"   # optional, overrides ADAIN_RATE_LIMIT ("" = none)
    max_styles = 500                     # optional, overrides ADAIN_MAX_STYLES_PER_TENANT
    queue_depth = 2                      # optional, overrides ADAIN_TENANT_QUEUE_DEPTH
    weight = 2                           # optional: turns at the model per round (default 1)
    max_streams = 1                      # optional, overrides ADAIN_MAX_STREAMS_PER_TENANT
    max_video_jobs = 1                   # optional, overrides ADAIN_MAX_VIDEO_JOBS_PER_TENANT

``adain keys add NAME [--admin]`` makes a key, prints it once and appends its digest. A file that
is not valid, names an unknown field, repeats a digest or a name, stops the start-up with an error
naming the line."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import limits

LOCAL = "local"  # the tenant with no keys configured, and the owner of data stored before tenants
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}")
DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_KEYS = 2  # the current key and the next one, while clients move over
FIELDS = {"name", "keys", "role", "rate_limit", "max_styles", "queue_depth", "weight", "max_streams",
          "max_video_jobs"}


@dataclass(frozen=True)
class TenantLimits:
    rate_limit: str = ""  # the limits library's notation; "" = none
    max_styles: int = 1000
    queue_depth: int = 4
    weight: int = 1
    max_streams: int = 2
    max_video_jobs: int = 2


@dataclass(frozen=True)
class Caller:
    """Who is calling, resolved once per request or stream (service.deps.CurrentCaller)."""

    tenant: str
    role: str = "user"
    limits: TenantLimits = field(default_factory=TenantLimits)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class KeysFileError(ValueError):
    """A keys file the service refuses to start with; the message names the file and line."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_tenant(key: str) -> str:
    """The tenant an ADAIN_API_KEYS key stands for: a prefix of its digest, never the key."""
    return "key-" + digest(key)[:10]


class Tenants:
    """Every configured tenant, by key digest; ``resolve`` is the one place a key is checked."""

    def __init__(self, callers: dict[str, Caller], open_caller: Caller | None) -> None:
        self._by_digest = callers
        self.open_caller = open_caller  # no keys configured: everyone is this caller
        self.names = sorted({c.tenant for c in callers.values()} | ({open_caller.tenant} if open_caller else set()))

    @classmethod
    def from_settings(cls, api_keys: list[str], keys_file: Path | None, defaults: TenantLimits) -> Tenants:
        callers: dict[str, Caller] = {}
        for key in api_keys:
            if digest(key) in callers:
                raise KeysFileError("ADAIN_API_KEYS names the same key twice")
            callers[digest(key)] = Caller(key_tenant(key), "user", defaults)
        if keys_file is not None:
            entries = read_keys_file(keys_file, defaults)
            if not entries:  # a keys file that opens the service to everyone is a mistake, not a choice
                raise KeysFileError(f"{keys_file}: no [[tenant]] in it (`adain keys add NAME` writes one)")
            for hashed, caller, where in entries:
                if hashed in callers:
                    raise KeysFileError(f"{where}: this key digest is already in use (ADAIN_API_KEYS or above)")
                callers[hashed] = caller
        return cls(callers, None if callers else Caller(LOCAL, "user", defaults))

    @property
    def required(self) -> bool:
        return self.open_caller is None

    def resolve(self, key: str | None) -> Caller | None:
        """The caller a key belongs to (the open caller when no keys are configured); None for a
        missing or unknown key. A dict lookup of the key's SHA-256: what it takes reveals nothing
        about the configured keys."""
        if self.open_caller is not None:
            return self.open_caller
        return self._by_digest.get(digest(key)) if key else None


# the keys file


def read_keys_file(path: Path, defaults: TenantLimits) -> list[tuple[str, Caller, str]]:
    """(digest, caller, "file:line") for every key in the file; KeysFileError naming the line."""
    try:
        text = path.read_text()
    except OSError as e:
        raise KeysFileError(f"keys file {path}: {e.strerror or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise KeysFileError(f"keys file {path}: {e}") from None
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"\s*\[\[\s*tenant\s*\]\]", line)]
    if set(data) - {"tenant"}:
        name = sorted(set(data) - {"tenant"})[0]
        raise KeysFileError(f"{path}:{_line(lines, 0, len(lines), name)}: unknown entry {name!r} (only [[tenant]] "
                            "tables belong in a keys file)")
    out, names = [], set()
    for i, entry in enumerate(data.get("tenant", [])):
        start = starts[i] if i < len(starts) else 0
        end = starts[i + 1] if i + 1 < len(starts) else len(lines)

        def where(needle: str | None = None) -> str:
            return f"{path}:{_line(lines, start, end, needle) if needle else start + 1}"

        caller, keys = _tenant(entry, defaults, where)
        if caller.tenant in names:
            raise KeysFileError(f"{where('name')}: tenant {caller.tenant!r} appears twice")
        names.add(caller.tenant)
        seen = {h for h, _, _ in out}
        for hashed in keys:
            if hashed in seen or keys.count(hashed) > 1:
                raise KeysFileError(f"{where(hashed)}: key digest {hashed[:12]}... appears twice")
            out.append((hashed, caller, where(hashed)))
    return out


def _tenant(entry: Any, defaults: TenantLimits, where) -> tuple[Caller, list[str]]:
    if not isinstance(entry, dict):
        raise KeysFileError(f"{where()}: a [[tenant]] must be a table")
    unknown = sorted(set(entry) - FIELDS)
    if unknown:
        raise KeysFileError(f"{where(unknown[0])}: unknown field {unknown[0]!r} (known: {', '.join(sorted(FIELDS))})")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise KeysFileError(f"{where('name')}: name must be 1-48 letters, digits, '.', '_' or '-' (got {name!r})")
    role = entry.get("role", "user")
    if role not in ("user", "admin"):
        raise KeysFileError(f"{where('role')}: role must be 'user' or 'admin' (got {role!r})")
    keys = entry.get("keys")
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_KEYS or \
            not all(isinstance(k, str) and DIGEST.fullmatch(k) for k in keys):
        raise KeysFileError(f"{where('keys')}: keys must be a list of 1-{MAX_KEYS} SHA-256 digests (64 lowercase hex "
                            "characters: `adain keys add` writes them; the keys themselves never go in this file)")
    overrides: dict[str, Any] = {}
    for name_, kind, low in (("max_styles", int, 0), ("queue_depth", int, 0), ("weight", int, 1),
                             ("max_streams", int, 0), ("max_video_jobs", int, 0)):
        if name_ in entry:
            value = entry[name_]
            if not isinstance(value, kind) or isinstance(value, bool) or value < low:
                raise KeysFileError(f"{where(name_)}: {name_} must be a whole number >= {low} (got {value!r})")
            overrides[name_] = value
    if "rate_limit" in entry:
        overrides["rate_limit"] = check_rate_limit(entry["rate_limit"], where("rate_limit"))
    return Caller(name, role, replace(defaults, **overrides)), list(keys)


def check_rate_limit(value: Any, where: str) -> str:
    """A rate limit in the limits library's notation ("10/second;300/minute"), or "" for none."""
    if not isinstance(value, str):
        raise KeysFileError(f"{where}: rate_limit must be a string such as '10/second;300/minute'")
    if value.strip():
        try:
            limits.parse_many(value)
        except ValueError:
            raise KeysFileError(f"{where}: rate_limit {value!r} is not a rate such as '10/second;300/minute'") from None
    return value.strip()


def _line(lines: list[str], start: int, end: int, needle: str) -> int:
    """The 1-based line in [start, end) where ``needle`` is set or appears (start's line if none)."""
    setting = re.compile(rf"\s*{re.escape(needle)}\s*=")
    for i in range(start, end):
        if setting.match(lines[i]):
            return i + 1
    for i in range(start, end):
        if needle in lines[i]:
            return i + 1
    return start + 1


# `adain keys add`: the one writer of the file


def add_key(path: Path, name: str, admin: bool = False) -> str:
    """Make a new random key for tenant ``name``, append its digest to the keys file (a new
    [[tenant]], or the tenant's second key while rotating) and return the key: it is not kept
    anywhere, so the caller shows it once."""
    if not NAME.fullmatch(name):
        raise KeysFileError(f"name must be 1-48 letters, digits, '.', '_' or '-' (got {name!r})")
    key = secrets.token_urlsafe(32)
    hashed = digest(key)
    text = path.read_text() if path.exists() else ""
    entries = read_keys_file(path, TenantLimits()) if text.strip() else []
    mine = [(h, c) for h, c, _ in entries if c.tenant == name]
    if not mine:
        block = f'[[tenant]]\nname = "{name}"\nrole = "{"admin" if admin else "user"}"\nkeys = ["{hashed}"]\n'
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block
    else:
        if len(mine) >= MAX_KEYS:
            raise KeysFileError(f"tenant {name!r} already has {MAX_KEYS} keys: delete the old digest from {path} "
                                "first (rotation: add the new key, move clients over, delete the old one)")
        old = mine[0][0]
        pattern = re.compile(rf'(keys\s*=\s*\[\s*"{old}"\s*)\]')
        if not pattern.search(text):
            raise KeysFileError(f"{path}: tenant {name!r}'s keys list is not on one line; add the digest {hashed} "
                                "by hand")
        text = pattern.sub(rf'\1, "{hashed}"]', text, count=1)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return key


def may_access(caller: Caller, owner: str) -> bool:
    """Whether ``caller`` may see, use or delete what ``owner`` stored: the one ownership rule,
    for styles and video jobs alike. Anything else behaves exactly as an unknown id."""
    return caller.is_admin or caller.tenant == owner
