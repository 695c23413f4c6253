"""Averages of decoder weights.

``EMA``: an exponential moving average of the weights, kept beside training (``--ema-decay``).
Why: the held-out relu1_1/relu2_1 style terms (the colours) swing by +-30 % between checkpoints of
one run (weights/TRAINING_LOG.md), so a single checkpoint is partly luck; the
average of the last ~1 / (1 - decay) steps is not.

``python -m training.average``: a weighted average of finished decoders that share a starting point
(e.g. the shipped one and a fine-tune of it), written as a decoder.safetensors.

    python -m training.average weights/decoder.safetensors runs/export_b/decoder.safetensors \
        --weights 0.75,0.25 --out runs/avg
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.cli import comma_floats
from model.decoder import Decoder, load_state, save_decoder
from training.export import write_sha256sums


class EMA:
    """``module`` holds the average, which starts at the model's weights. With ``warmup`` its decay
    grows as (1 + n) / (10 + n) after n updates (TensorFlow's ExponentialMovingAverage
    num_updates), so the average forgets random starting weights within a few hundred steps;
    without, a trained starting decoder keeps its share (decay^n) of the average."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.updates = decay, warmup, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        weight = 1.0 - decay
        for avg, new in zip(self.module.state_dict().values(), model.state_dict().values()):
            avg.lerp_(new.detach().to(avg.dtype), weight)

    def state_dict(self) -> dict[str, Any]:
        return {"decoder": self.module.state_dict(), "decay": self.decay, "warmup": self.warmup,
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["decoder"])
        self.updates = int(state["updates"])  # decay and warm-up are this run's flags


def average_decoders(paths: list[Path], weights: list[float] | None = None) -> tuple[Decoder, dict[str, str]]:
    """The weighted mean (weights normalised to sum 1) of decoders' parameters, and metadata that
    says what went in. Only meaningful for decoders fine-tuned from one another."""
    weights = weights or [1.0] * len(paths)
    if len(weights) != len(paths) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"need one non-negative weight per decoder ({len(paths)}), got {weights}")
    total = sum(weights)
    states = [load_state(p) for p in paths]
    mean = {k: sum(w / total * s[0][k].float() for w, s in zip(weights, states)) for k in states[0][0]}
    decoder = Decoder()
    decoder.load_state_dict(mean)
    steps = [int(m.get("step", 0)) for _, m in states]
    meta = {**states[0][1], "step": str(max(steps)),  # the longest-trained one's total
            "averaged": json.dumps([{"file": str(p), "weight": w / total, "step": s}
                                    for p, w, s in zip(paths, weights, steps)])}
    return decoder, meta


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("decoders", type=Path, nargs="+", help="decoder .safetensors / .pth files or checkpoints")
    p.add_argument("--weights", type=comma_floats,
                   help="comma-separated, one per decoder (normalised); default: equal")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        decoder, meta = average_decoders(args.decoders, args.weights)
    except ValueError as e:  # a wrong weight count is a usage error: say so, no traceback
        p.error(str(e))
    path = save_decoder(decoder, args.out, "safetensors", meta)
    write_sha256sums(args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
