"""AdaIN and everything done with style statistics, in one place.

A style is, for AdaIN, the per-channel mean and standard deviation of its relu4_1 features: a
``StyleCode`` of 2 x 512 floats. Interpolating styles with weights w (sum 1) equals one AdaIN with
mean = sum w_i mean_i and std = sum w_i std_i (the paper's Eq. for style interpolation), so a mix
is itself a StyleCode.

A code also carries the style image's RGB mean and covariance (12 floats) for ``match_colors``,
our one step after the paper's pipeline: the decoder cannot read a painting's palette back out of
relu4_1 statistics and gives paintings an ochre cast, so the decoded image's colour distribution
is moved part of the way to the style's (weights/MODEL_CARD.md, "Colour step").

A code also keeps each channel's whole distribution (a quantile table, model/efdm.py) for
``matching="efdm"``, which gives the content the style's sorted values instead of its mean and std;
``transfer`` is where the two ways meet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model import efdm
from model.errors import InputError

EPS = 1e-5  # added to the variance, as in the reference code
MAX_STYLES = 8
MATCHINGS = ("adain", "efdm")  # how content features take the style's: mean and std, or sorted values
# match_colors' default strength: the style's mean colour, half its covariance; the best of the
# variants measured on held-out photos x textures and x Van Goghs (weights/MODEL_CARD.md, "Colour step")
COLOR_MATCH = 0.5
MAX_COLOR_GAIN = 4.0  # match_colors stretches contrast at most this much along any colour axis
RIDGE = 1e-5  # added to RGB covariances, so a flat image still has an invertible one


@dataclass(frozen=True)
class StyleCode:
    """Per-channel mean and std (float32, shape (C,)) of a style's relu4_1 features."""

    mean: torch.Tensor
    std: torch.Tensor
    # RGB mean (3,) and covariance (3, 3) of the style image's pixels in [0, 1], float64; None for a
    # code built without pixels, which then gets no colour step
    rgb_mean: torch.Tensor | None = None
    rgb_cov: torch.Tensor | None = None
    # each channel's quantile table (model/efdm.py) for EFDM; None for a code stored before styles
    # kept one
    quantiles: efdm.Table | None = None

    @property
    def nbytes(self) -> int:
        parts = [t for t in (self.mean, self.std, self.rgb_mean, self.rgb_cov) if t is not None]
        return sum(t.numel() * t.element_size() for t in parts) + (self.quantiles.nbytes if self.quantiles else 0)

    @property
    def has_colors(self) -> bool:
        return self.rgb_mean is not None and self.rgb_cov is not None


def mean_std(feat: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std of (N, C, H, W) features, each shaped (N, C, 1, 1).

    Unbiased variance plus eps, as the reference implementation (biased for a single position).
    """
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1).float()
    var = flat.var(dim=2, correction=1 if flat.shape[2] > 1 else 0) + eps
    return flat.mean(dim=2).view(n, c, 1, 1), var.sqrt().view(n, c, 1, 1)


def style_code(feat: torch.Tensor, image: torch.Tensor | None = None) -> StyleCode:
    """StyleCode of one image's (1, C, H, W) relu4_1 features, on the CPU in float32 (its quantile
    table in float16), with the RGB statistics of ``image`` (1, 3, H, W) in [0, 1] when given."""
    mean, std = mean_std(feat)
    colors = rgb_stats(image.reshape(3, -1)) if image is not None else (None, None)
    return StyleCode(mean.flatten().cpu(), std.flatten().cpu(), *colors, quantiles=efdm.quantiles(feat))


def adain(content: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
          content_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Normalise content features per channel, then give them the style's mean and std.
    ``content_stats``: the content's (mean, std) when they come from elsewhere (a tile of a larger
    image normalised with the whole image's, model/tiling.py); else those of ``content``."""
    c_mean, c_std = content_stats if content_stats is not None else mean_std(content)
    if mean.dim() == 1:  # one StyleCode for the whole batch; else per-sample (N, C, 1, 1)
        mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    return (content.float() - c_mean) / c_std * std.to(content.device) + mean.to(content.device)


def transfer(content: torch.Tensor, code: StyleCode, matching: str = "adain") -> torch.Tensor:
    """One image's (1, C, ...) content features given the style of ``code``: AdaIN (its mean and
    std) or EFDM (its sorted values, model/efdm.py)."""
    if matching == "efdm":
        return efdm.efdm(content, code.quantiles)
    return adain(content, code.mean, code.std)


def normalise_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Check interpolation weights for ``n`` styles and make them sum to 1 (equal by default)."""
    if not 1 <= n <= MAX_STYLES:
        raise InputError(f"between 1 and {MAX_STYLES} styles are supported, got {n}")
    if weights is None or len(weights) == 0:
        return [1.0 / n] * n
    if len(weights) != n:
        raise InputError(f"got {len(weights)} weights for {n} styles; give one weight per style")
    w = [float(x) for x in weights]
    if any(not math.isfinite(x) or x < 0 for x in w):
        raise InputError(f"weights must be finite and >= 0, got {w}")
    total = sum(w)
    if total <= 0:
        raise InputError("weights must not all be zero")
    return [x / total for x in w]


def mix(codes: Sequence[StyleCode], weights: Sequence[float] | None = None) -> StyleCode:
    """Interpolate styles: weighted mean of their means and of their stds (weights normalised),
    and of their quantile tables (the average of quantile functions: each rank's value is the
    weighted mean of the styles' values at that rank). The colours are those of the styles'
    pixels pooled with the same weights (a mixture's mean and covariance), when every code has them."""
    w = normalise_weights(weights, len(codes))
    w, codes = zip(*[(wi, c) for wi, c in zip(w, codes) if wi > 0])  # a weight of 0: as if not sent
    if len(codes) == 1:
        return codes[0]
    mean = sum(wi * c.mean for wi, c in zip(w, codes))
    std = sum(wi * c.std for wi, c in zip(w, codes))
    table = None
    if all(c.quantiles is not None for c in codes):
        table = efdm.mix([c.quantiles for c in codes], list(w))
    if not all(c.has_colors for c in codes):
        return StyleCode(mean, std, quantiles=table)
    rgb_mean = sum(wi * c.rgb_mean for wi, c in zip(w, codes))
    second = sum(wi * (c.rgb_cov + torch.outer(c.rgb_mean, c.rgb_mean)) for wi, c in zip(w, codes))
    return StyleCode(mean, std, rgb_mean, second - torch.outer(rgb_mean, rgb_mean), table)


def blend(target: torch.Tensor, content: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """Content-style trade-off: alpha * t + (1 - alpha) * f(c); alpha in [0, 1] (``model.plan``
    checks it), a number or one per sample shaped (N, 1, 1, 1)."""
    return alpha * target + (1.0 - alpha) * content.float()


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Binary mask (H, W) with values in [0, 1] -> boolean (h, w) at feature resolution (nearest)."""
    m = F.interpolate(mask.float().reshape(1, 1, *mask.shape[-2:]), size=size, mode="nearest")
    return m[0, 0] >= 0.5


def masked(content: torch.Tensor, fg: StyleCode, bg: StyleCode, mask: torch.Tensor,
           matching: str = "adain") -> torch.Tensor:
    """Spatial control: ``transfer`` of each region (mask True = ``fg``, False = ``bg``) with that
    region's own content statistics (or ranks), as the reference code does for AdaIN. ``content``
    is (1, C, h, w), mask (h, w)."""
    if content.shape[0] != 1 or mask.shape != content.shape[-2:]:
        raise ValueError("masked takes one image and a mask at feature resolution")
    c = content.shape[1]
    flat = content.float().reshape(c, -1)
    out = torch.empty_like(flat)
    m = mask.reshape(-1).to(flat.device)
    for region, code in ((m, fg), (~m, bg)):
        if region.any():
            part = flat[:, region].unsqueeze(0).unsqueeze(-1)  # (1, C, P, 1)
            out[:, region] = transfer(part, code, matching)[0, :, :, 0]
    return out.reshape_as(content)


def rgb_stats(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (3,) and covariance (3, 3), float64 on the CPU, of (3, P) RGB pixels (on any device),
    with a small ridge so a flat image still has an invertible covariance."""
    x = pixels.detach().reshape(3, -1).float()  # float32 over pixels (2x faster than float64), 3x3 in float64
    cov = torch.cov(x, correction=0).double().cpu() + RIDGE * torch.eye(3, dtype=torch.float64)
    return x.mean(dim=1).double().cpu(), cov


class Moments:
    """``rgb_stats`` gathered a part at a time (float64 sums of pixels and of their outer products),
    for images too large to hold as one float tensor (model/tiling.py)."""

    def __init__(self) -> None:
        self.n, self.sum, self.outer = 0, torch.zeros(3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64)

    def add(self, pixels: torch.Tensor) -> None:
        """(3, P) pixels in [0, 1], any dtype and device."""
        x = pixels.detach().reshape(3, -1).double().cpu()
        self.n += x.shape[1]
        self.sum += x.sum(dim=1)
        self.outer += x @ x.T

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, covariance) as ``rgb_stats`` gives them (the same ridge)."""
        mean = self.sum / max(1, self.n)
        cov = self.outer / max(1, self.n) - torch.outer(mean, mean)
        return mean, cov + RIDGE * torch.eye(3, dtype=torch.float64)


def _sqrtm(m: torch.Tensor, power: float = 0.5) -> torch.Tensor:
    """m ** power for a symmetric positive definite matrix."""
    vals, vecs = torch.linalg.eigh(m)
    return vecs @ torch.diag(vals.clamp_min(1e-12).pow(power)) @ vecs.T


def match_colors(pixels: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, strength: float) -> torch.Tensor:
    """Move (3, P) RGB pixels in [0, 1] towards the colour distribution with ``mean`` and ``cov``:
    x' = x + t A' (x - mu_x) + min(1, 2t) (mu - mu_x), A' = A - I, with A = C_x^-1/2 (C_x^1/2 C
    C_x^1/2)^1/2 C_x^-1/2 the optimal-transport map between the two Gaussians (the one that moves
    colours least; no rotation, unlike ``coral``). So t = 0 changes nothing, t = 0.5 gives the
    exact mean colour and the covariance halfway (the default: held-out pairs scored better with
    the whole mean than with half, and worse with the whole covariance, which also amplifies the
    decoder's artefacts), and t = 1 the exact mean and covariance. A's gains are capped at
    MAX_COLOR_GAIN so a nearly flat output (a blank sky, a solid-colour photo) is not stretched into
    amplified noise; shrinking (towards a black-and-white style, say) is not capped.
    Returns pixels of the input dtype, clamped to [0, 1]."""
    if strength == 0:
        return pixels
    x = pixels.reshape(3, -1).float()
    return apply_color_map(x, color_map(*rgb_stats(x), mean, cov, strength)).to(pixels.dtype).reshape(pixels.shape)


def apply_color_map(pixels: torch.Tensor, cmap: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(3, P) float pixels through ``color_map``'s x' = M x + shift, clamped to [0, 1]."""
    m, shift = cmap
    return torch.addmm(shift.float().to(pixels.device)[:, None], m.float().to(pixels.device), pixels).clamp_(0, 1)


def color_map(mu_x: torch.Tensor, cov_x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor,
              strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``match_colors``' affine map x' = M x + shift (float64, M (3, 3), shift (3,)) for pixels whose
    mean and covariance are ``mu_x``, ``cov_x`` (tiled images have them from a pass of their own)."""
    root, inv_root = _sqrtm(cov_x), _sqrtm(cov_x, -0.5)
    vals, vecs = torch.linalg.eigh(inv_root @ _sqrtm(root @ cov.double().cpu() @ root) @ inv_root)
    a = vecs @ torch.diag(vals.clamp(max=MAX_COLOR_GAIN)) @ vecs.T
    eye = torch.eye(3, dtype=torch.float64)
    m = eye + strength * (a - eye)
    return m, mu_x + min(1.0, 2 * strength) * (mean.double().cpu() - mu_x) - m @ mu_x


def coral(source: torch.Tensor, target: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Recolour image ``source`` so its RGB mean and covariance equal ``target``'s (the official
    AdaIN colour preservation: recolour the style to the content before encoding it). ``target``:
    an image, or its (mean, covariance) as ``rgb_stats`` gives them (``Moments`` for large images).

    Linear colour transfer x' = C_t^1/2 C_s^-1/2 (x - mu_s) + mu_t with covariances of pixels.
    The reference code whitens per channel and adds I to unnormalised scatter matrices, which
    scales the result by sqrt(N_t / N_s) when the images differ in size; we use covariances (and a
    small ridge) so the result does not depend on image sizes. Images are (1, 3, H, W) in [0, 1];
    the result is clamped to [0, 1].
    """
    xs = source.reshape(3, -1).double().cpu()  # the style image before encoding: already on the CPU
    mu_s, cov_s = rgb_stats(xs)
    mu_t, cov_t = target if isinstance(target, tuple) else rgb_stats(target)
    out = _sqrtm(cov_t) @ _sqrtm(cov_s, -0.5) @ (xs - mu_s[:, None]) + mu_t[:, None]
    return out.clamp(0, 1).to(source.device, source.dtype).reshape(source.shape)
