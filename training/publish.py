"""Publish a training run's decoder as a version of the model store (docs/models.md), with the
gate's numbers in its card: the held-out evaluation (training/evaluate.py: content and style
distances over every held-out content × style pair, the model card's measures) of the candidate
and of the store's current default, side by side. Publishing never changes the default.

    python -m training.publish runs/v8/p3 --name v8 --val-content-dir data/val/content \\
        --val-style-dir data/val/paintings

RUN is a run folder (its export/decoder.safetensors, else its checkpoint.pt) or a decoder file.
The store is ``--models-dir``, else ``ADAIN_MODELS_DIR``, else the service's STATE_DIR/models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from model.decoder import Decoder, load_state
from model.paths import WEIGHTS_DIR
from model.vgg import load_encoder
from service.decoders import BadVersion, ModelStore
from service.settings import Settings
from training.evaluate import eval_images, evaluate
from training.losses import load_style_scales

SCALES = WEIGHTS_DIR / "heldout_style_scales.safetensors"  # the style terms' scales the model card uses


def decoder_of(run: Path) -> Path:
    for candidate in (run / "export" / "decoder.safetensors", run / "decoder.safetensors", run / "checkpoint.pt"):
        if candidate.is_file():
            return candidate
    if run.is_file():
        return run
    raise BadVersion(f"{run}: no export/decoder.safetensors, decoder.safetensors or checkpoint.pt in it")


@torch.no_grad()
def gate(decoders: dict[str, Path], content_dir: Path, style_dir: Path, n: int, size: int) -> dict[str, dict]:
    """Each decoder's held-out content and style distances (lower is closer) on the same pairs."""
    encoder, cpu = load_encoder().eval(), torch.device("cpu")
    contents, styles = eval_images(content_dir, n, size), eval_images(style_dir, n, size)
    scales = load_style_scales(SCALES) if SCALES.is_file() else None
    numbers = {}
    for name, path in decoders.items():
        decoder = Decoder()
        decoder.load_state_dict(load_state(path)[0])
        result, _ = evaluate(encoder, decoder.eval(), contents, styles, cpu, None, scales)
        numbers[name] = {"content": round(result["content"], 4), "style": round(result["style"], 4)}
    return {"pairs": len(contents) * len(styles), "size": size, "distances": numbers}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--name", required=True, help="the version's name in the store")
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--val-content-dir", type=Path, required=True)
    p.add_argument("--val-style-dir", type=Path, required=True)
    p.add_argument("--n", type=int, default=24, help="held-out images per role")
    p.add_argument("--size", type=int, default=256, help="their side in px")
    args = p.parse_args(argv)
    store = ModelStore.of(Settings(), args.models_dir)
    try:
        source, default = decoder_of(args.run), store.rollout().default
        numbers = gate({args.name: source, default: store.path(default)}, args.val_content_dir, args.val_style_dir,
                       args.n, args.size)
        stored = store.import_decoder(source, args.name, {"run": str(args.run), "gate": {**numbers,
                                                                                          "against": default}})
    except BadVersion as e:
        sys.exit(f"error: {e}")
    print(f"{args.name} stored as {stored} (the default stays {default}: adain models default {args.name})")
    print(f"held-out, {numbers['pairs']} pairs at {args.size}²:   content   style   (lower is closer)")
    for name, d in numbers["distances"].items():
        print(f"  {name:<16} {d['content']:8.4f} {d['style']:7.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
