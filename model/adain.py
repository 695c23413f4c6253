"""AdaIN and everything done with style statistics, in one place.

A style is, for AdaIN, the per-channel mean and standard deviation of its relu4_1 features: a
``StyleCode`` of 2 x 512 floats. Interpolating styles with weights w (sum 1) equals one AdaIN with
mean = sum w_i mean_i and std = sum w_i std_i (the paper's Eq. for style interpolation), so a mix
is itself a StyleCode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

EPS = 1e-5  # added to the variance, as in the reference code
MAX_STYLES = 8


@dataclass(frozen=True)
class StyleCode:
    """Per-channel mean and std (float32, shape (C,)) of a style's relu4_1 features."""

    mean: torch.Tensor
    std: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.mean.numel() * self.mean.element_size() + self.std.numel() * self.std.element_size()


def mean_std(feat: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std of (N, C, H, W) features, each shaped (N, C, 1, 1).

    Unbiased variance plus eps, as the reference implementation (biased for a single position).
    """
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1).float()
    var = flat.var(dim=2, correction=1 if flat.shape[2] > 1 else 0) + eps
    return flat.mean(dim=2).view(n, c, 1, 1), var.sqrt().view(n, c, 1, 1)


def style_code(feat: torch.Tensor) -> StyleCode:
    """StyleCode of one image's (1, C, H, W) relu4_1 features, on the CPU in float32."""
    mean, std = mean_std(feat)
    return StyleCode(mean.flatten().cpu(), std.flatten().cpu())


def adain(content: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalise content features per channel, then give them the style's mean and std."""
    c_mean, c_std = mean_std(content)
    if mean.dim() == 1:  # one StyleCode for the whole batch; else per-sample (N, C, 1, 1)
        mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    return (content.float() - c_mean) / c_std * std.to(content.device) + mean.to(content.device)


def normalise_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Validate interpolation weights for ``n`` styles and make them sum to 1 (equal by default)."""
    if not 1 <= n <= MAX_STYLES:
        raise ValueError(f"between 1 and {MAX_STYLES} styles are supported, got {n}")
    if weights is None or len(weights) == 0:
        return [1.0 / n] * n
    if len(weights) != n:
        raise ValueError(f"got {len(weights)} weights for {n} styles; give one weight per style")
    w = [float(x) for x in weights]
    if any(not math.isfinite(x) or x < 0 for x in w):
        raise ValueError(f"weights must be finite and >= 0, got {w}")
    total = sum(w)
    if total <= 0:
        raise ValueError("weights must not all be zero")
    return [x / total for x in w]


def mix(codes: Sequence[StyleCode], weights: Sequence[float] | None = None) -> StyleCode:
    """Interpolate styles: weighted mean of their means and of their stds (weights normalised)."""
    w = normalise_weights(weights, len(codes))
    mean = sum(wi * c.mean for wi, c in zip(w, codes))
    std = sum(wi * c.std for wi, c in zip(w, codes))
    return StyleCode(mean, std)


def blend(target: torch.Tensor, content: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """Content-style trade-off: alpha * t + (1 - alpha) * f(c); alpha in [0, 1], a number or one
    per sample shaped (N, 1, 1, 1)."""
    if not bool(((torch.as_tensor(alpha) >= 0) & (torch.as_tensor(alpha) <= 1)).all()):
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha * target + (1.0 - alpha) * content.float()


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Binary mask (H, W) with values in [0, 1] -> boolean (h, w) at feature resolution (nearest)."""
    m = F.interpolate(mask.float().reshape(1, 1, *mask.shape[-2:]), size=size, mode="nearest")
    return m[0, 0] >= 0.5


def masked_adain(content: torch.Tensor, fg: StyleCode, bg: StyleCode, mask: torch.Tensor) -> torch.Tensor:
    """Spatial control: AdaIN of each region (mask True = ``fg``, False = ``bg``) with that region's
    own content statistics, as the reference code does. ``content`` is (1, C, h, w), mask (h, w)."""
    if content.shape[0] != 1 or mask.shape != content.shape[-2:]:
        raise ValueError("masked_adain takes one image and a mask at feature resolution")
    c = content.shape[1]
    flat = content.float().reshape(c, -1)
    out = torch.empty_like(flat)
    m = mask.reshape(-1).to(flat.device)
    for region, code in ((m, fg), (~m, bg)):
        if region.any():
            part = flat[:, region].unsqueeze(0).unsqueeze(-1)  # (1, C, P, 1)
            out[:, region] = adain(part, code.mean, code.std)[0, :, :, 0]
    return out.reshape_as(content)


def coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Recolour image ``source`` so its RGB mean and covariance equal ``target``'s (the official
    AdaIN colour preservation: recolour the style to the content before encoding it).

    Linear colour transfer x' = C_t^1/2 C_s^-1/2 (x - mu_s) + mu_t with covariances of pixels.
    The reference code whitens per channel and adds I to unnormalised scatter matrices, which
    scales the result by sqrt(N_t / N_s) when the images differ in size; we use covariances (and a
    small ridge) so the result does not depend on image sizes. Images are (1, 3, H, W) in [0, 1];
    the result is clamped to [0, 1].
    """
    def stats(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = img.reshape(3, -1).double()
        mu = x.mean(dim=1, keepdim=True)
        cov = torch.cov(x, correction=0) + 1e-5 * torch.eye(3, dtype=x.dtype, device=x.device)
        return x, mu, cov

    def sqrtm(m: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        vals, vecs = torch.linalg.eigh(m)
        vals = vals.clamp_min(1e-12).pow(-0.5 if inverse else 0.5)
        return vecs @ torch.diag(vals) @ vecs.T

    xs, mu_s, cov_s = stats(source)
    _, mu_t, cov_t = stats(target)
    out = sqrtm(cov_t) @ sqrtm(cov_s, inverse=True) @ (xs - mu_s) + mu_t
    return out.clamp(0, 1).to(source.dtype).reshape(source.shape)
