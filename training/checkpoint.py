"""Training checkpoints: written atomically (temp file, fsync, rename), read back with
``weights_only=True`` (tensors, numbers, strings: nothing executable). ``save_run`` writes all a
resume needs (and what an export records), ``restore`` puts a resumed run back where it stopped."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model.atomic import write_atomic

if TYPE_CHECKING:  # the loop's own objects, passed in
    from training.data import Data
    from training.train import Trainer


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """A crash at any point leaves either the old file or the new one, never a torn one."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(state, f)

    write_atomic(path, write)


def load(path: str | Path) -> dict[str, Any]:
    return torch.load(str(path), map_location="cpu", weights_only=True)


def save_run(t: Trainer, data: Data, losses: dict, path: Path) -> None:
    """The checkpoint (rank 0 only, atomically): all a resume needs, and what the export records."""
    if not t.main_proc:
        return
    args = t.args
    save_atomic({
        "decoder": t.decoder.state_dict(), "optimizer": t.optimizer.state_dict(), "scaler": t.scaler.state_dict(),
        "step": t.step, "style_scales": t.scales, "ema": t.ema.state_dict() if t.ema else None,
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if t.device.type == "cuda" else []},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "meta": {"losses": losses, "content_dir": str(args.content_dir), "style_dir": str(args.style_dir),
                 "content_images": data.n_content, "style_images": data.n_style, "world_size": t.world,
                 "init": str(args.init or t.init_meta.get("init", "")), "init_step": t.init_step,
                 "wall_s": round(time.time() - t.started, 1)},
    }, path)


def restore(t: Trainer, ckpt: dict, log: Callable[..., None]) -> None:
    """A resumed run's optimizer, scaler, random state and weight average."""
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if t.device.type == "cuda" and ckpt["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    if t.ema and ckpt.get("ema"):
        t.ema.load_state_dict(ckpt["ema"])
    elif ckpt.get("ema"):
        log(f"{t.args.resume} kept a weight average; without --ema-decay this run drops it", flush=True)
    log(f"resumed from {t.args.resume} at step {t.step}", flush=True)
