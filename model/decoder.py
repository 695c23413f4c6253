"""The AdaIN decoder in the reference layout, and loading/saving its weights.

The module *is* an ``nn.Sequential`` with the reference port's 29 modules, so its state dict keys
("1.weight", "5.weight", ...) are those of the official ``decoder.pth``: one state dict serves both
our safetensors file and the reference ``.pth`` export.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn


def _block(c_in: int, c_out: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)]
    return layers + [nn.ReLU()] if relu else layers


def _up() -> nn.Module:
    return nn.Upsample(scale_factor=2, mode="nearest")


class Decoder(nn.Sequential):
    """relu4_1 features (N, 512, h, w) -> RGB image (N, 3, 8h, 8w), roughly in [0, 1]."""

    def __init__(self) -> None:
        super().__init__(
            *_block(512, 256), _up(),
            *_block(256, 256), *_block(256, 256), *_block(256, 256), *_block(256, 128), _up(),
            *_block(128, 128), *_block(128, 64), _up(),
            *_block(64, 64), *_block(64, 3, relu=False),
        )


def random_decoder(seed: int = 0) -> Decoder:
    """A decoder with PyTorch's default init under a fixed seed (for tests and fresh training)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Decoder()


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Decoder state dict and metadata from a ``.safetensors`` file, an official ``decoder.pth``,
    or a training checkpoint (a dict with a "decoder" entry; its weight average where the run kept
    one, as ``training.export`` ships). ``.pth`` files are read with ``weights_only=True``: tensors
    only, never arbitrary pickled objects."""
    path = Path(path)
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if "decoder" in state and isinstance(state["decoder"], dict):
        weights = state["ema"]["decoder"] if state.get("ema") else state["decoder"]
        return weights, {k: json.dumps(v) for k, v in state.get("meta", {}).items()}
    return state, {}


def load_decoder(path: str | Path) -> Decoder:
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"decoder weights not found at {path}: point --decoder / ADAIN_DECODER at a "
            "decoder.safetensors or the reference decoder.pth"
        )
    decoder = Decoder()
    decoder.load_state_dict(load_state(path)[0])
    return decoder.eval()


def save_decoder(decoder: nn.Module, out_dir: str | Path, fmt: str, metadata: dict[str, str] | None = None) -> Path:
    """Write ``decoder.safetensors`` (with string metadata) or the reference ``decoder.pth``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in decoder.state_dict().items()}
    if fmt == "safetensors":
        path = out_dir / "decoder.safetensors"
        save_file(state, str(path), metadata=metadata or {})
    elif fmt == "reference":
        path = out_dir / "decoder.pth"
        torch.save(state, path)
    else:
        raise ValueError(f"unknown format {fmt!r} (reference or safetensors)")
    return path
