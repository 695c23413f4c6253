"""Training checkpoints: written atomically (temp file, fsync, rename), read back with
``weights_only=True`` (tensors, numbers, strings: nothing executable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model.atomic import write_atomic


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """A crash at any point leaves either the old file or the new one, never a torn one."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(state, f)

    write_atomic(path, write)


def load(path: str | Path) -> dict[str, Any]:
    return torch.load(str(path), map_location="cpu", weights_only=True)
