"""Exact feature distribution matching (EFDM, Zhang et al., CVPR 2022): each channel of the
content's relu4_1 takes the style's values in the content's own order, so the whole sorted
distribution of each channel becomes the style's (AdaIN matches only its mean and std).

A style keeps its distribution as a quantile ``Table``: per channel, its sorted relu4_1 values,
linear between them, read at ``QUANTILES`` ranks from the smallest (0) to the largest (1), the
ranks shared by every channel. A content value of rank k among P takes the table's value at
k / (P - 1). The ranks crowd towards the top (1 - (1 - u)², u even): the largest activations are
spread far apart and carry the strokes, while the bottom half of most channels is zero; 32 points
so placed follow the whole distribution more closely than 256 evenly spaced ones (docs/pipeline.md).
With a table of the style's every value at even ranks (``every_value``) and a content of as many
positions, a content value of rank k takes the style's k-th value exactly.

Ties: relu4_1 is zero in much of every channel. The content's zeros take one value, the mean of
the values their ranks would take, so the output does not depend on how a sort orders equal
values (the reference code's order paints a pattern across the zeros), the output's mean is the
style's, and tiles can give the same value (their zeros are counted exactly). Other equal values
are rare in float32 and keep the sort's order.

Several styles mix as the average of their quantile functions (the 1-D Wasserstein barycentre:
``model.adain.mix``). A large image drawn in tiles reads each value's rank in the whole image from
``Ranks``, a per-channel histogram of the content gathered in pass 1 (model/tiling.py)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

QUANTILES = 32  # table points per channel: 512 x 32 float16 = 32 KB per style (docs/pipeline.md)
BINS = 8192  # Ranks' histogram: log2 of the positive values over [LOG_LO, LOG_HI], 1/256 octave a bin
LOG_LO, LOG_HI = -20.0, 12.0


@dataclass(frozen=True)
class Table:
    """A quantile table: ``values`` (C, Q) float16 at ``ranks`` (Q,) float64, from 0 to 1, increasing."""

    values: torch.Tensor
    ranks: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.values.numel() * self.values.element_size() + self.ranks.numel() * self.ranks.element_size()

    def _segment(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For ranks ``t`` (float64 in [0, 1]): the point each lies after and how far towards the next (0-1)."""
        knots = self.ranks.to(t.device, torch.float64)
        j = (torch.searchsorted(knots, t, right=True) - 1).clamp(0, len(knots) - 2)
        return j, (t - knots[j]) / (knots[j + 1] - knots[j])

    def at(self, rank: torch.Tensor) -> torch.Tensor:
        """The quantile function at ranks in [0, 1]: (K,) the same for every channel, or (C, K) each
        its own; linear between points, float32 (C, K) on the ranks' device."""
        j, frac = self._segment(rank.double().clamp(0, 1))
        values = self.values.to(rank.device, torch.float32)
        if rank.dim() == 1:
            a, b = values.index_select(1, j), values.index_select(1, j + 1)
        else:
            a, b = values.gather(1, j), values.gather(1, j + 1)
        return torch.lerp(a, b, frac.float())  # lerp: exactly b at the last point

    def zero_value(self, zeros: torch.Tensor, n: int) -> torch.Tensor:
        """(C,) the value a content's ``zeros`` (C,) zeros among ``n`` values take: the mean of the
        quantile function at their ranks k / (n - 1), k = 0 .. zeros - 1 (trapezoid rule, exact
        between the table's points)."""
        v = self.values.to(zeros.device, torch.float64)
        width = self.ranks.to(zeros.device, torch.float64).diff()
        area = torch.zeros_like(v)
        area[:, 1:] = ((v[:, 1:] + v[:, :-1]) * width / 2).cumsum(dim=1)
        steps = (zeros.double() - 1).clamp_min(0)[:, None]  # the last zero's rank, times (n - 1)
        j, u = self._segment(steps / max(1, n - 1))
        a, b = v.gather(1, j), v.gather(1, j + 1)
        integral = area.gather(1, j) + width[j] * u * (2 * a + u * (b - a)) / 2
        mean = (integral * (n - 1) + (v[:, :1] + a + u * (b - a)) / 2) / (steps + 1)
        return mean[:, 0].where(steps[:, 0] > 0, v[:, 0]).float()


def even_ranks(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Ranks k / (n - 1) of n values (float64): a content's, and a table's of every value (the
    same division, so that equal counts meet exactly)."""
    return torch.arange(n, dtype=torch.float64, device=device) / max(1, n - 1)


def crowded_ranks(points: int = QUANTILES) -> torch.Tensor:
    return 1 - (1 - even_ranks(points)) ** 2


def quantiles(feat: torch.Tensor, ranks: torch.Tensor | None = None) -> Table:
    """The quantile table of one image's (1, C, H, W) features at ``ranks`` (default: QUANTILES
    crowded towards the top), float16 on the CPU."""
    c = feat.shape[1]
    values = feat.reshape(c, -1).float().contiguous().sort(dim=1).values
    if values.shape[1] == 1:
        values = values.expand(c, 2)
    ranks = crowded_ranks() if ranks is None else ranks.double()
    return Table(every_value(values).at(ranks.to(values.device)).half().cpu(), ranks.cpu())


def every_value(values: torch.Tensor) -> Table:
    """The table of sorted (C, M) values, all of them, at even ranks."""
    return Table(values, even_ranks(values.shape[1]))


def mix(tables: list[Table], weights: list[float]) -> Table:
    """Weighted mean of quantile functions, rank by rank (on the first table's ranks)."""
    ranks = tables[0].ranks
    return Table(sum(w * t.at(ranks).cpu() for w, t in zip(weights, tables)), ranks)


def efdm(content: torch.Tensor, table: Table) -> torch.Tensor:
    """One image's (1, C, ...) features with each channel's values replaced by the style's at the
    same rank (its zeros: their mean), float32, same shape."""
    c = content.shape[1]
    flat = content.float().reshape(c, -1).contiguous()  # rows in memory: channels_last would halve the sort's speed
    p = flat.shape[1]
    values, order = flat.sort(dim=1)
    rank = torch.arange(p, device=flat.device)
    out = table.at(even_ranks(p, flat.device))
    zeros = (values <= 0).sum(dim=1)
    out = torch.where(rank < zeros[:, None], table.zero_value(zeros, p)[:, None], out)
    return torch.empty_like(flat).scatter_(1, order, out).reshape(content.shape)


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

    def transfer(self, feat: torch.Tensor, table: Table) -> torch.Tensor:
        """``efdm`` of a tile's (1, C, H, W) features with their ranks in the whole image."""
        c = feat.shape[1]
        x = feat.float().reshape(c, -1).contiguous()
        counts = self.counts.to(x.device)
        below = counts.cumsum(dim=1) - counts + self.zeros.to(x.device)[:, None]
        b, frac = self._bins(x)
        rank = below.gather(1, b) + frac.double() * (counts.gather(1, b) - 1).clamp_min(0)
        values = table.at(rank / max(1, self.n - 1))
        return values.where(x > 0, table.zero_value(self.zeros.to(x.device), self.n)[:, None]).reshape(feat.shape)
