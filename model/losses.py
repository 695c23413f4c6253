"""The paper's training losses (Huang & Belongie 2017, Eq. 11-13), as in the reference code.

    L = content_weight * Lc + style_weight * Ls
    Lc = MSE(f(g(t)), t)                                   at relu4_1, t = AdaIN(f(c), f(s))
    Ls = sum over relu1_1..relu4_1 of MSE(mean) + MSE(std) between g(t)'s and the style's features

One addition, ``scales``: each style layer's channel statistics divided by that channel's mean
activation over the training images. The paper's VGG was normalised on ImageNet so every channel
averages 1; ours is normalised on 12 sample images, and a few channels that are nearly silent
there are 10-40x too loud on real photos and paintings. Measured on 128 corpus images, one relu1_1
channel carried 99% of the relu1_1 style loss's variance (93% at relu2_1): the loss then asks the
decoder to match one colour detector, with gradients ~1,000x the content loss's, and training
collapses. Renormalised, no channel carries more than 11%. relu4_1 (what AdaIN and the decoder
see) is untouched: this only weighs the loss.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from model.adain import mean_std

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def content_loss(output_feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output_feat.float(), target.float())


def style_losses(output_feats: list[torch.Tensor], style_feats: list[torch.Tensor],
                 scales: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """One term per layer (relu1_1, relu2_1, relu3_1, relu4_1): matching channel means and stds,
    each channel divided by its ``scales`` entry when given (see the module docstring)."""
    terms = []
    for i, (o, s) in enumerate(zip(output_feats, style_feats)):
        (om, osd), (sm, ssd) = mean_std(o), mean_std(s)
        if scales is not None:
            k = scales[i].to(om.device).view(1, -1, 1, 1)
            om, osd, sm, ssd = om / k, osd / k, sm / k, ssd / k
        terms.append(F.mse_loss(om, sm) + F.mse_loss(osd, ssd))
    return terms


@torch.no_grad()
def channel_scales(encoder: torch.nn.Module, images: torch.Tensor, batch: int = 16) -> list[torch.Tensor]:
    """Per style layer, each channel's mean activation over ``images`` (N, 3, H, W), floored at
    5% of the layer's median so a silent channel is not blown up."""
    sums: list[torch.Tensor] = []
    for i in range(0, len(images), batch):
        feats = encoder.features(images[i:i + batch])
        means = [f.float().mean(dim=(2, 3)).sum(0) for f in feats]
        sums = means if not sums else [a + b for a, b in zip(sums, means)]
    scales = [s / len(images) for s in sums]
    return [s.clamp(min=0.05 * float(s.median())).cpu() for s in scales]


def load_style_scales(path: str | Path) -> list[torch.Tensor]:
    """Style channel scales from a training checkpoint or a .safetensors of one tensor per style layer
    (e.g. weights/heldout_style_scales.safetensors, the scales the shipped decoder trained with)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        tensors = load_file(path)
        return [tensors[name] for name in STYLE_LAYERS]
    return torch.load(path, map_location="cpu", weights_only=True)["style_scales"]
