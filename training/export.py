"""Turn a training checkpoint into shippable weights.

    python -m training.export --checkpoint runs/r1/checkpoint.pt [--out weights/] [--data "corpus v1 ..."]

Writes OUT/decoder.safetensors with metadata (step, data, losses, hyperparameters) and the
reference-format OUT/decoder.pth, then refreshes OUT/SHA256SUMS for the .safetensors files there.
A run trained with --ema-decay exports its weight average unless --raw asks for the optimizer's own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from training.checkpoint import load
from model.decoder import Decoder, save_decoder
from model.paths import WEIGHTS_DIR


def write_sha256sums(folder: Path) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in sorted(folder.glob("*.safetensors"))]
    (folder / "SHA256SUMS").write_text("".join(lines))


def export(checkpoint: Path, out: Path, data: str | None = None, raw: bool = False) -> list[Path]:
    ckpt = load(checkpoint)
    ema = None if raw else ckpt.get("ema")
    decoder = Decoder()
    decoder.load_state_dict(ema["decoder"] if ema else ckpt["decoder"])
    run_meta = ckpt.get("meta", {})
    meta = {
        "step": str(ckpt["step"] + int(run_meta.get("init_step", 0))),  # total, across warm starts
        "steps_this_run": str(ckpt["step"]),
        "hyperparameters": json.dumps(ckpt.get("args", {})),
        "losses": json.dumps(run_meta.get("losses", {})),
        "data": data or json.dumps({k: v for k, v in run_meta.items() if k != "losses"}),
        "weights": (f"EMA, decay {ema['decay']:g}{'' if ema.get('warmup', True) else ' from the starting weights'}, "
                    f"{ema['updates']} updates") if ema else "the optimizer's",
    }
    written = [save_decoder(decoder, out, "safetensors", meta), save_decoder(decoder, out, "reference")]
    write_sha256sums(out)
    return written


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    p.add_argument("--data", help="a line describing the training data, stored in the metadata")
    p.add_argument("--raw", action="store_true", help="the optimizer's weights even where the run kept an EMA")
    args = p.parse_args(argv)
    for path in export(args.checkpoint, args.out, args.data, args.raw):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
