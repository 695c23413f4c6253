"""The paper's training losses (Huang & Belongie 2017, Eq. 11-13), as in the reference code, and
the objective the trainer and the evaluation compute with them.

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

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from model.adain import adain, mean_std
from model.vgg import Encoder
from training.quality import flip_gap, mirrored

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


@dataclass
class Terms:
    """One batch through the objective: the decoded images, the AdaIN target, the loss terms."""

    output: torch.Tensor
    target: torch.Tensor
    content: torch.Tensor
    style: list[torch.Tensor]  # one per STYLE_LAYERS
    flip: torch.Tensor | None = None


@torch.no_grad()
def mirrored_target(encoder: Encoder, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The AdaIN target of the content and style images mirrored (training/quality.py ``mirrored``):
    what the pipeline decodes for a user who turns the photo and the style."""
    m_mean, m_std = mean_std(encoder(mirrored(style)))
    return adain(encoder(mirrored(content)), m_mean, m_std)


def objective(encoder: Encoder, decoder: torch.nn.Module, content: torch.Tensor, style: torch.Tensor,
              scales: list[torch.Tensor] | None = None, flip: bool = False) -> Terms:
    """The paper's terms for a batch of pairs. ``flip``: also decode the target of the mirrored
    content and style images in the same pass (one forward, as DDP wants) for ``flip_gap``: the
    whole pipeline's direction bias, which is what a user who turns a photo sees."""
    style_feats = encoder.features(style)
    content_feat = encoder(content)
    s_mean, s_std = mean_std(style_feats[-1])
    target = adain(content_feat, s_mean, s_std).detach()
    gap = None
    if flip:
        output, other = decoder(torch.cat([target, mirrored_target(encoder, content, style)])).chunk(2)
        gap = flip_gap(output, other)
    else:
        output = decoder(target)
    out_feats = encoder.features(output)
    return Terms(output, target, content_loss(out_feats[-1], target), style_losses(out_feats, style_feats, scales), gap)


def reconstruction(encoder: Encoder, decoder: torch.nn.Module, content: torch.Tensor,
                   pixel_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Warm-up objective: decode an image's own relu4_1 features back to the image (pixels and
    relu4_1), which teaches the decoder colours and structure before any style is asked of it."""
    feat = encoder(content).detach()
    output = decoder(feat)
    return output, content_loss(encoder(output), feat) + pixel_weight * F.mse_loss(output.float(), content)
