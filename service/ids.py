"""The shapes of the ids a client may send, checked once before any store key is built from them.

An id of another shape is answered exactly as an unknown one (404 / "not registered"): it is
never pasted into a Redis key (where ``{id}:units`` would name another key of the same job) and
the answer says nothing about which ids exist."""

from __future__ import annotations

import re

# a registered style: 24 hex digits of a hash; a preset: the slug of its file name
STYLE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,126}[a-z0-9])?")
# a video job: secrets.token_urlsafe(16)
JOB_ID = re.compile(r"[A-Za-z0-9_-]{22}")


def is_style_id(text: str) -> bool:
    return STYLE_ID.fullmatch(text) is not None


def is_job_id(text: str) -> bool:
    return JOB_ID.fullmatch(text) is not None
