"""Images larger than one tile, in memory bounded by the tile, not by the image.

The image is cut into square cores of ``tile`` px on the 8-px grid of the features; each core is
run with a ``margin`` of image around it, so every output pixel of the core sees the same input as
in one whole pass (the encoder's and decoder's receptive fields are ~70 + ~60 px) and the pooling
grid lines up with the whole image's: cores meet without seams, and no blending is needed. What
AdaIN and the colour step need of the whole image is gathered first:

1. encoder pass: the content's relu4_1 mean and std over the whole image, exactly (sums over the
   cores' features, per mask region); for EFDM, each channel's histogram (``model.efdm.Ranks``),
   from which pass 2 reads each value's rank in the whole image;
2. encoder + AdaIN (EFDM) + decoder pass: each core's pixels into the 8-bit output, and the output's RGB
   mean and covariance (per region);
3. the colour step's affine map, from those whole-image statistics, over the output in strips.

So peak memory is one tile's network pass plus the 8-bit input and output images. When the plan
carries the content's features (``ContentFeatures`` of every core, kept from pass 1 of this or an
earlier render: ``Stylizer.encode_content``), no encoder runs: pass 1 sums the kept features and
pass 2 runs the decoder alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from PIL import Image

from model.adain import EPS, Moments, adain, apply_color_map, blend, color_map, resize_mask
from model.efdm import Ranks
from model.images import pad_to_multiple, to_image, to_tensor
from model.plan import FEATURE_DTYPE, ContentFeatures, Plan

if TYPE_CHECKING:  # the Stylizer imports this module: its networks are what a tile runs through
    from model.stylizer import Stylizer

TILE = 1024   # core side in px (a multiple of 8)
MARGIN = 64  # image around each core, px (a multiple of 8): 64 already gives the whole pass to 1 level
Progress = Callable[[int, int], None]  # (steps done, steps in all)


@dataclass(frozen=True)
class Core:
    x0: int
    y0: int
    x1: int
    y1: int


def cores(width: int, height: int, tile: int) -> list[Core]:
    """Cores covering the canvas (the image padded to a multiple of 8, as a whole pass pads it)."""
    wp, hp = -(-width // 8) * 8, -(-height // 8) * 8
    return [Core(x, y, min(x + tile, wp), min(y + tile, hp)) for y in range(0, hp, tile) for x in range(0, wp, tile)]


class Tiled:
    """One plan rendered tile by tile with ``stylizer``'s networks."""

    def __init__(self, stylizer: Stylizer, plan: Plan, tile: int = TILE, margin: int = MARGIN,
                 progress: Progress | None = None) -> None:
        if tile % 8 or margin % 8 or tile <= 0:
            raise ValueError(f"tile ({tile}) and margin ({margin}) must be positive multiples of 8")
        self.st, self.plan, self.tile, self.margin = stylizer, plan, tile, margin
        self.width, self.height = plan.size
        self.cores = cores(self.width, self.height, tile)
        self.kept = plan.features.feats if plan.features is not None else None
        if self.kept is not None and (plan.features.tile != tile or len(self.kept) != len(self.cores)):
            raise ValueError(f"features cut for {plan.features.tile}-px tiles, not {tile}")
        self.progress = progress or (lambda done, total: None)
        self.done, self.total = 0, 2 * len(self.cores) + 1
        # the mask at feature resolution over the whole canvas (the whole pass's resize_mask)
        self.mask = None
        if plan.mask is not None:
            self.mask = resize_mask(pad_to_multiple(plan.mask[None, None])[0, 0],
                                    (-(-self.height // 8), -(-self.width // 8)))

    def _step(self) -> None:
        self.done += 1
        self.progress(self.done, self.total)

    def features(self, i: int) -> tuple[torch.Tensor, tuple[slice, slice], tuple[int, int]]:
        """relu4_1 of core ``i`` with its margin (kept, or from the encoder), the core's window in
        them, and the crop's origin."""
        c = self.cores[i]
        ix0, iy0 = max(0, c.x0 - self.margin), max(0, c.y0 - self.margin)
        if self.kept is not None:
            feat = self.kept[i].to(self.st.device, self.st.dtype)
        else:
            ix1, iy1 = min(self.width, c.x1 + self.margin), min(self.height, c.y1 + self.margin)
            x = to_tensor(self.plan.content.crop((ix0, iy0, ix1, iy1)))
            if ix1 == self.width or iy1 == self.height:  # the canvas edge: padded as a whole pass pads it
                x = pad_to_multiple(x)
            feat = self.st.encoder(self.st.net_input(x))
        fy, fx = (c.y0 - iy0) // 8, (c.x0 - ix0) // 8
        window = (slice(fy, fy + (c.y1 - c.y0) // 8), slice(fx, fx + (c.x1 - c.x0) // 8))
        return feat, window, (ix0, iy0)

    def regions(self, c: Core) -> list[torch.Tensor | None]:
        """Per style code, its positions in the core's feature window (None = all of them)."""
        if self.mask is None:
            return [None]
        m = self.mask[c.y0 // 8:c.y1 // 8, c.x0 // 8:c.x1 // 8]
        return [m, ~m]

    @torch.inference_mode()
    def content_stats(self) -> list[tuple[torch.Tensor, torch.Tensor] | Ranks]:
        """Pass 1, per region: the relu4_1 mean and std (N, C, 1, 1 shaped as mean_std's) for AdaIN,
        the ranks of its values for EFDM."""
        n = len(self.plan.codes)
        sums = [torch.zeros(512, dtype=torch.float64) for _ in range(n)]
        squares = [torch.zeros(512, dtype=torch.float64) for _ in range(n)]
        counts = [0] * n
        ranks = [Ranks() for _ in range(n)] if self.plan.matching == "efdm" else None
        for i, c in enumerate(self.cores):
            feat, (ys, xs), _ = self.features(i)
            core = feat[0, :, ys, xs].reshape(512, -1)
            for r, region in enumerate(self.regions(c)):
                part = core if region is None else core[:, region.reshape(-1).to(core.device)]
                if ranks is not None:
                    ranks[r].add(part)
                    continue
                part = part.double().cpu()
                sums[r] += part.sum(dim=1)
                squares[r] += (part * part).sum(dim=1)
                counts[r] += part.shape[1]
            self._step()
        if ranks is not None:
            return ranks
        stats = []
        for s, q, k in zip(sums, squares, counts):
            mean = s / max(1, k)
            var = (q - k * mean * mean) / max(1, k - 1) + EPS  # unbiased, as mean_std
            stats.append((mean.float().view(1, -1, 1, 1), var.clamp_min(EPS).sqrt().float().view(1, -1, 1, 1)))
        return stats

    @torch.inference_mode()
    def render(self) -> Image.Image:
        plan = self.plan
        stats = self.content_stats()
        out = Image.new("RGB", (self.width, self.height))  # the one full-size copy (8192²: 200 MB)
        moments = [Moments() for _ in plan.codes]
        for i, c in enumerate(self.cores):
            feat, _, (ix0, iy0) = self.features(i)
            target = self._match(feat, (ix0 // 8, iy0 // 8), stats)
            pixels = self.st.decoder(blend(target, feat, plan.alpha).to(self.st.dtype)
                                     .contiguous(memory_format=torch.channels_last))
            y1, x1 = min(c.y1, self.height), min(c.x1, self.width)
            core = pixels[0, :, c.y0 - iy0:y1 - iy0, c.x0 - ix0:x1 - ix0].float().clamp(0, 1)
            for moment, region in zip(moments, self.pixel_regions(c.y0, y1, c.x0, x1)):
                moment.add(core.reshape(3, -1) if region is None else core[:, region])
            out.paste(to_image(core), (c.x0, c.y0))
            self._step()
        self._recolor(out, moments)
        self._step()
        return out

    @torch.inference_mode()
    def encode(self) -> ContentFeatures:
        """Every core's features (pass 1's encoder output), kept for the passes and renders to come."""
        feats = []
        for i in range(len(self.cores)):
            feats.append(self.features(i)[0].to(FEATURE_DTYPE))
            self._step()
        return ContentFeatures(self.plan.size, tuple(feats), image_moments(self.plan.content), self.tile)

    def _match(self, feat: torch.Tensor, origin: tuple[int, int],
               stats: list[tuple[torch.Tensor, torch.Tensor] | Ranks]) -> torch.Tensor:
        """AdaIN (or EFDM) of a tile's features (their top-left at ``origin`` on the canvas' feature
        grid) with the whole image's content statistics (ranks), each mask region with its own."""
        targets = [s.transfer(feat, code.quantiles) if isinstance(s, Ranks) else adain(feat, code.mean, code.std, s)
                   for s, code in zip(stats, self.plan.codes)]
        if self.mask is None:
            return targets[0]
        h, w = feat.shape[-2:]
        rows = (torch.arange(h) + origin[1]).clamp(0, self.mask.shape[0] - 1)
        cols = (torch.arange(w) + origin[0]).clamp(0, self.mask.shape[1] - 1)
        return torch.where(self.mask[rows][:, cols].to(feat.device), *targets)

    def pixel_regions(self, y0: int, y1: int, x0: int, x1: int) -> list[torch.Tensor | None]:
        if self.plan.mask is None:
            return [None]
        fg = self.plan.mask[y0:y1, x0:x1] >= 0.5
        return [fg, ~fg]

    def _recolor(self, out: Image.Image, moments: list[Moments], rows: int = 256) -> None:
        """Pass 3: the colour step, its map from the whole output's statistics, a strip at a time."""
        strength = self.plan.alpha * self.plan.color_match
        maps = [color_map(*m.stats(), code.rgb_mean, code.rgb_cov, strength) if code.has_colors and strength and m.n
                else None for m, code in zip(moments, self.plan.codes)]
        if all(m is None for m in maps):
            return
        for y in range(0, self.height, rows):
            box = (0, y, self.width, min(y + rows, self.height))
            strip = to_tensor(out.crop(box))[0]  # (3, h, W)
            for cmap, region in zip(maps, self.pixel_regions(y, box[3], 0, self.width)):
                if cmap is None:
                    continue
                if region is None:
                    strip = apply_color_map(strip.reshape(3, -1), cmap).reshape(strip.shape)
                else:
                    strip[:, region] = apply_color_map(strip[:, region], cmap)
            out.paste(to_image(strip), box[:2])


def image_moments(img: Image.Image, rows: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """An image's RGB mean and covariance without holding it as one float tensor."""
    m = Moments()
    for y in range(0, img.height, rows):
        m.add(to_tensor(img.crop((0, y, img.width, min(img.height, y + rows))))[0])
    return m.stats()


def feature_bytes(size: tuple[int, int], tile: int | None, margin: int = MARGIN) -> int:
    """What a content's kept features take (float16 relu4_1: 512 channels at 1/8 of each side): of
    the whole image (``tile`` None), or of each core of ``tile`` px with its margin."""
    w, h = size
    if tile is None:
        return (-(-w // 8)) * (-(-h // 8)) * 512 * 2
    total = 0
    for c in cores(w, h, tile):
        cw = min(w, c.x1 + margin) - max(0, c.x0 - margin)
        ch = min(h, c.y1 + margin) - max(0, c.y0 - margin)
        total += (-(-cw // 8)) * (-(-ch // 8)) * 512 * 2
    return total


def needs_tiles(size: tuple[int, int], tile: int) -> bool:
    """Whether an image of (w, h) is rendered in tiles: when it is larger than one tile."""
    return size[0] * size[1] > tile * tile
