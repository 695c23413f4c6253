"""Held-out evaluation of a decoder: the objective's terms, the 8-px grid and the direction bias
on every content x style pair of a fixed held-out set. The trainer runs it every --eval-every
steps; scripts/model_card_assets.py and the benchmarks import it."""

from __future__ import annotations

from pathlib import Path

import torch

from model.adain import adain, match_colors, mean_std, rgb_stats
from model.errors import InvalidImage
from model.images import open_image, resize_shorter, to_tensor
from model.vgg import Encoder
from training.data import list_images
from training.losses import STYLE_LAYERS, content_loss, objective, style_losses
from training.quality import flip_gap, grid_ratio, luma_power, mirrored


def eval_images(folder: Path, n: int, size: int) -> torch.Tensor:
    """The first ``n`` readable images of a folder (by name), resized and centre-cropped to size x size."""
    out = []
    for path in list_images(folder):
        if len(out) == n:
            break
        try:
            img = resize_shorter(open_image(path), size)
        except InvalidImage:
            continue  # the loaders skip such files too
        left, top = (img.width - size) // 2, (img.height - size) // 2
        out.append(to_tensor(img.crop((left, top, left + size, top + size)))[0])
    if not out:
        raise ValueError(f"no readable images in {folder}")
    return torch.stack(out)


@torch.no_grad()
def evaluate(encoder: Encoder, decoder: torch.nn.Module, contents: torch.Tensor, styles: torch.Tensor,
             device: torch.device, amp: torch.dtype | None, scales: list[torch.Tensor] | None = None,
             color_match: float = 0.0) -> tuple[dict[str, float], torch.Tensor]:
    """Mean held-out losses over every content x style pair, the outputs' ``grid8``, ``flipgap``
    (the decoder fed the mirrored target) and ``flipgap_pipeline`` (the target of the mirrored
    images: see training/quality.py), and a grid of up to 8 pairs. With ``scales`` the style terms
    are the normalised ones training used (see training/losses.py). ``color_match``: measure the
    product's output, the decoder's with the colour step after it (model/adain.py
    ``match_colors``; the flip gaps stay the decoder's own)."""
    pairs = [(c, s) for c in range(len(contents)) for s in range(len(styles))]
    lc, ls, rows, power, lf, lp = 0.0, torch.zeros(4), [], 0.0, 0.0, 0.0
    for i in range(0, len(pairs), 8):
        chunk = pairs[i:i + 8]
        c = contents[[p[0] for p in chunk]].to(device).contiguous(memory_format=torch.channels_last)
        s = styles[[p[1] for p in chunk]].to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            terms = objective(encoder, decoder, c, s, scales, flip=True)
            out, c_loss, s_losses = terms.output, terms.content, terms.style
            gap = flip_gap(out, decoder(mirrored(terms.target)))
            if color_match:
                out = torch.stack([match_colors(o.float().clamp(0, 1), *rgb_stats(si), color_match)
                                   for o, si in zip(out, s)])
                style_feats, out_feats = encoder.features(s), encoder.features(out.to(c.dtype))
                s_mean, s_std = mean_std(style_feats[-1])
                c_loss = content_loss(out_feats[-1], adain(encoder(c), s_mean, s_std))
                s_losses = style_losses(out_feats, style_feats, scales)
        lc += c_loss.item() * len(chunk)
        lf += gap.item() * len(chunk)
        lp += terms.flip.item() * len(chunk)
        ls += torch.stack([x.float() for x in s_losses]).cpu() * len(chunk)
        power = power + luma_power(out.float().clamp(0, 1)).cpu()
        if not rows:
            rows = [torch.cat([c[j], s[j], out[j].float().clamp(0, 1)], dim=2).cpu() for j in range(len(chunk))]
    n = len(pairs)
    result = {"content": lc / n, "style": float(ls.sum()) / n,
              **{f"style_{name}": float(v) / n for name, v in zip(STYLE_LAYERS, ls)},
              # root mean squares, in 8-bit levels
              "flipgap": 255 * (lf / n) ** 0.5, "flipgap_pipeline": 255 * (lp / n) ** 0.5}
    if all(d % 8 == 0 for d in power.shape):  # the decoder's 8-px grid, see training/quality.py
        result["grid8"] = grid_ratio(power)
    return result, torch.cat(rows, dim=1)


@torch.no_grad()
def style_distance(encoder: Encoder, images: list[torch.Tensor], style: torch.Tensor,
                   scales: list[torch.Tensor] | None = None) -> float:
    """How far ``images`` (each (1, 3, H, W) in [0, 1]) are from ``style``: the objective's style
    term (channel means and stds at relu1_1 .. relu4_1), summed over layers, averaged over the
    images; the video benchmark's measure of how much stabilization costs. Pass the model card's
    ``scales`` (weights/heldout_style_scales.safetensors): unscaled, relu1_1's near-silent
    channels dominate, and two frames that differ by 2 levels on average measured 0.66 and 0.07
    there (0.0226 and 0.0217 scaled)."""
    style_feats = encoder.features(style)
    return sum(float(sum(style_losses(encoder.features(x), style_feats, scales))) for x in images) / len(images)
