"""Image-quality measures for judging decoders beyond the training loss."""

from __future__ import annotations

import torch


def luma_power(images: torch.Tensor) -> torch.Tensor:
    """Summed luminance power spectrum (H, W) of ``images`` (N, 3, H, W in [0, 1]), each image's
    mean removed; sums over batches of one size add up."""
    y = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).float()
    y = y - y.mean(dim=(1, 2), keepdim=True)
    return torch.fft.fft2(y).abs().pow(2).sum(0)


def grid_ratio(power: torch.Tensor, period: int = 8) -> float:
    """How strongly images share a pixel-aligned grid of ``period`` px, from their ``luma_power``
    (H and W multiples of ``period``): the power at the grid's frequencies (multiples of 1/period
    on both axes, DC excluded) over the mean power just around each, median over those
    frequencies. About 1 for photos; a decoder's 8-px grid (the relu4_1 stride, and the JPEG block
    size of many style images) shows as 2 or more."""
    h, w = power.shape
    ratios = []
    for a in range(0, h, h // period):
        for b in range(0, w, w // period):
            if a == 0 and b == 0:
                continue
            around = [power[(a + i) % h, (b + j) % w] for i in range(-2, 3) for j in range(-2, 3) if (i, j) != (0, 0)]
            ratios.append(power[a, b] / torch.stack(around).mean())
    return float(torch.stack(ratios).median())
