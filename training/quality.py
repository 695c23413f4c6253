"""Image-quality measures for judging decoders beyond the training loss."""

from __future__ import annotations

import torch


def luma_power(images: torch.Tensor) -> torch.Tensor:
    """Summed luminance power spectrum (H, W) of ``images`` (N, 3, H, W in [0, 1]), each image's
    mean removed; sums over batches of one size add up. Differentiable (the trainer's
    ``--grid-weight`` penalty backpropagates through it)."""
    y = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).float()
    y = y - y.mean(dim=(1, 2), keepdim=True)
    return torch.fft.fft2(y).abs().pow(2).sum(0)


def lattice_ratios(power: torch.Tensor, period: int = 8) -> torch.Tensor:
    """Per frequency of a ``period``-px grid (multiples of 1/period on both axes, DC excluded):
    the power there over the mean power of the 24 frequencies around it (a 5 x 5 square).
    ``power`` is a ``luma_power`` whose H and W are multiples of ``period``."""
    h, w = power.shape
    around = sum(torch.roll(power, (i, j), (0, 1)) for i in range(-2, 3) for j in range(-2, 3) if (i, j) != (0, 0))
    ratio = power / (around / 24 + 1e-12)  # a flat image (a collapsed decoder) gives 0, not NaN
    lattice = ratio[::h // period, ::w // period].flatten()
    return lattice[1:]  # [0] is DC (removed by luma_power, so 0 / something)


def grid_ratio(power: torch.Tensor, period: int = 8) -> float:
    """How strongly images share a pixel-aligned grid of ``period`` px: the median of
    ``lattice_ratios``. About 1 for photos; a decoder's 8-px grid (the relu4_1 stride, and the
    JPEG block size of many style images) shows as 2 or more."""
    return float(lattice_ratios(power, period).median())


def grid_penalty(images: torch.Tensor, period: int = 8) -> torch.Tensor:
    """A training term against the decoder's grid: the mean of log(lattice ratio) where it is
    above 1, over the batch's summed spectrum (one image's spectrum is too noisy to judge a
    lattice by). 0 for a batch with no more power at the grid's frequencies than around them, so
    it leaves photos' and paintings' own detail alone."""
    return lattice_ratios(luma_power(images), period).clamp(min=1.0).log().mean()


def mirrored(images: torch.Tensor) -> torch.Tensor:
    """A batch in three parts, each mirrored about a different axis: the first turned upside down,
    the second left-right, the third about the diagonal (transposed; turned 180 degrees when not
    square). Each is its own inverse, so ``mirrored(decoder(mirrored(t)))`` is what decoder(t)
    should be."""
    v, h, d = torch.tensor_split(images, 3)
    d = d.transpose(2, 3) if d.shape[2] == d.shape[3] else d.flip(2, 3)
    return torch.cat([v.flip(2), h.flip(3), d])


def flip_gap(output: torch.Tensor, mirrored_output: torch.Tensor) -> torch.Tensor:
    """How much a decoder's picture depends on which way is up, left, or vertical: the mean
    squared difference between ``output`` = decoder(t) and ``mirrored(decoder(mirrored(t)))``.
    Fed the same features mirrored, a decoder without a direction of its own draws the mirrored
    picture; the shipped decoders have two ("drips" that point down whichever way up the photo
    is, and strokes that run vertically). Reflection padding and nearest upsampling are
    mirror-symmetric, so a decoder can reach 0. The trainer's ``--flip-weight`` term applies it to
    the whole pipeline (the target of the mirrored content and style images); the measured effect
    of each weight is in weights/TRAINING_LOG.md."""
    return (output.float() - mirrored(mirrored_output).float()).pow(2).mean()
