"""Exact feature distribution matching (EFDM, Zhang et al., CVPR 2022): each channel of the
content's relu4_1 takes the style's values in the content's own order, so the whole sorted
distribution of each channel becomes the style's (AdaIN matches only its mean and std).

A style keeps its distribution as a quantile table: per channel, its sorted relu4_1 values, linear
between them, read at ``QUANTILES`` evenly spaced ranks from the smallest (0) to the largest (1).
A content value of rank k among P takes the table's value at k / (P - 1); with a table of the
style's every value and a content of as many positions, that is the style's k-th value exactly.

Ties: relu4_1 is zero in much of every channel. The content's zeros take one value, the mean of
the values their ranks would take, so the output does not depend on how a sort orders equal
values (the reference code's order paints a pattern across the zeros), the output's mean is the
style's, and tiles can give the same value (their zeros are counted exactly). Other equal values
are rare in float32 and keep the sort's order.

Several styles mix as the average of their quantile functions (the 1-D Wasserstein barycentre:
``model.adain.mix``). A large image drawn in tiles reads each value's rank in the whole image from
``Ranks``, a per-channel histogram of the content gathered in pass 1 (model/tiling.py)."""

from __future__ import annotations

import torch

QUANTILES = 256  # table points per channel: 512 x 256 float16 = 256 KB per style (docs/pipeline.md)
BINS = 8192  # Ranks' histogram: log2 of the positive values over [LOG_LO, LOG_HI], 1/256 octave a bin
LOG_LO, LOG_HI = -20.0, 12.0


def quantiles(feat: torch.Tensor, points: int = QUANTILES) -> torch.Tensor:
    """The quantile table (C, points), float16 on the CPU, of one image's (1, C, H, W) features."""
    c = feat.shape[1]
    values = feat.reshape(c, -1).float().contiguous().sort(dim=1).values
    if values.shape[1] == 1:
        values = values.expand(c, 2)
    return lookup(values, torch.arange(points, device=values.device), points).half().cpu()


def lookup(table: torch.Tensor, rank: torch.Tensor, n: int) -> torch.Tensor:
    """The quantile function of a (C, Q) table at ranks ``rank`` among ``n`` values (rank 0: the
    table's first point, n - 1: its last): (K,) the same for every channel, or (C, K) each its own;
    linear between points, float32 (C, K)."""
    q = table.shape[1]
    pos = (rank.double() * (q - 1) / max(1, n - 1)).clamp(0, q - 1)  # with n = q, rank k is point k exactly
    lo = pos.floor().long().clamp(0, q - 2)
    frac = (pos - lo).float()
    if rank.dim() == 1:
        a, b = table.index_select(1, lo), table.index_select(1, lo + 1)
    else:
        a, b = table.gather(1, lo), table.gather(1, lo + 1)
    return a + (b - a) * frac


def efdm(content: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """One image's (1, C, ...) features with each channel's values replaced by the style's at the
    same rank (its zeros: their mean), float32, same shape."""
    c = content.shape[1]
    flat = content.float().reshape(c, -1).contiguous()  # rows in memory: channels_last would halve the sort's speed
    p = flat.shape[1]
    values, order = flat.sort(dim=1)
    table = table.to(flat.device).float()
    rank = torch.arange(p, device=flat.device)
    out = lookup(table, rank, p)
    zeros = (values <= 0).sum(dim=1)
    out = torch.where(rank < zeros[:, None], run_mean(table, p, zeros)[:, None], out)
    return torch.empty_like(flat).scatter_(1, order, out).reshape(content.shape)


def run_mean(table: torch.Tensor, n: int, count: torch.Tensor) -> torch.Tensor:
    """(C,) mean of the table's values at ranks k / (n - 1), k = 0 .. count - 1 (per channel): the
    value the ``count`` zeros of a content of ``n`` values take (trapezoid rule: exact between the
    table's points)."""
    table = table.double()
    q = table.shape[1]
    h = 1.0 / (q - 1)
    area = torch.zeros_like(table)
    area[:, 1:] = ((table[:, 1:] + table[:, :-1]) * h / 2).cumsum(dim=1)
    end = (count.double() - 1).clamp_min(0)[:, None] / max(1, n - 1)  # the run's last rank, (C, 1)
    pos = end * (q - 1)
    j = pos.floor().long().clamp(0, q - 2)
    u = pos - j
    a, b = table.gather(1, j), table.gather(1, j + 1)
    integral = area.gather(1, j) + h * u * (2 * a + u * (b - a)) / 2
    at_end = a + u * (b - a)
    width = end * (n - 1)  # count - 1
    mean = (integral * (n - 1) + (table[:, :1] + at_end) / 2) / (width + 1)
    return mean[:, 0].where(width[:, 0] > 0, table[:, 0]).float()


class Ranks:
    """The rank of each value in the whole content, per channel, for images drawn in tiles: a
    histogram of log2 of the positive values (and a count of zeros) summed over the tiles in pass
    1; in pass 2 a value's rank is the count below its bin plus its place inside the bin (linear)."""

    def __init__(self, channels: int = 512) -> None:
        self.n = 0
        self.zeros = torch.zeros(channels, dtype=torch.int64)
        self.counts = torch.zeros(channels, BINS, dtype=torch.int64)

    @staticmethod
    def _bins(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = ((x.clamp_min(1e-30).log2() - LOG_LO) * (BINS / (LOG_HI - LOG_LO))).clamp(0, BINS - 1e-3)
        b = pos.floor()
        return b.long(), pos - b

    def add(self, part: torch.Tensor) -> None:
        """(C, P) features of one part of the image (a tile's core, or a mask region of it)."""
        x = part.float()
        c, p = x.shape
        self.n += p
        positive = x > 0
        self.zeros += (~positive).sum(dim=1).cpu()
        b, _ = self._bins(x)
        index = (b + torch.arange(c, device=x.device)[:, None] * BINS)[positive]
        self.counts += torch.bincount(index, minlength=c * BINS).view(c, BINS).cpu()

    def transfer(self, feat: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``efdm`` of a tile's (1, C, H, W) features with their ranks in the whole image."""
        c = feat.shape[1]
        x = feat.float().reshape(c, -1).contiguous()
        counts = self.counts.to(x.device)
        below = counts.cumsum(dim=1) - counts + self.zeros.to(x.device)[:, None]
        b, frac = self._bins(x)
        rank = below.gather(1, b) + frac.double() * (counts.gather(1, b) - 1).clamp_min(0)
        table = table.to(x.device).float()
        values = lookup(table, rank, self.n)
        zero = run_mean(table, self.n, self.zeros.to(x.device))
        return values.where(x > 0, zero[:, None]).reshape(feat.shape)
