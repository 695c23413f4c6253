"""What a stylization is asked to do, checked once: ``Options`` (the numbers a user chooses) and
``Plan`` (one image's prepared inputs: the content at its output size, the style code(s), the
mask), which ``Stylizer.render`` turns into pixels without checking anything again.

``Options`` checks each value when it is built, so a caller (the service, before any decoding)
refuses a bad request at once; ``Stylizer.prepare`` checks the rules that need the images (how
many styles, weights, mask) and builds the ``Plan``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from model.adain import COLOR_MATCH, MATCHINGS, StyleCode
from model.errors import InputError, OutOfRange

MAX_SIDE = 16384  # content_size / style_size: the largest shorter side anyone can ask for


@dataclass(frozen=True)
class Options:
    """``alpha``: content-style trade-off, 0 = content, 1 = full style. ``color_match`` (times
    alpha): how far the output's colours move towards the style's after decoding (0 = the paper's
    pipeline). ``preserve_color``: recolour style images to the content's colours before encoding
    them. ``weights``: one per style, >= 0, normalised (None = equal). Sizes are shorter sides in
    px, 0 = as is. ``matching``: how the content's features take the style's, "adain" (mean and
    std, the paper) or "efdm" (the whole sorted distribution of each channel: model/efdm.py)."""

    weights: tuple[float, ...] | None = None
    alpha: float = 1.0
    color_match: float = COLOR_MATCH
    preserve_color: bool = False
    content_size: int = 512
    style_size: int = 512
    matching: str = "adain"

    def __post_init__(self) -> None:
        if self.matching not in MATCHINGS:
            raise OutOfRange("matching", f"must be one of {', '.join(MATCHINGS)}, got {self.matching!r}")
        for name in ("alpha", "color_match"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
                raise OutOfRange(name, f"must be a number in [0, 1], got {value}")
        for name in ("content_size", "style_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and 0 <= value <= MAX_SIDE):
                raise OutOfRange(name, f"must be a shorter side in px from 0 (keep) to {MAX_SIDE}, got {value}")
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(self.weights))


FEATURE_DTYPE = torch.float16  # kept features: >= 60 dB against fp32 ones, half the bytes (docs/performance.md)


@dataclass(frozen=True)
class ContentFeatures:
    """A content's encoder output, kept so that another render of it runs the decoder alone:
    relu4_1 of the whole padded image (``tile`` 0), or of each tile's core with its margin in
    ``model.tiling.cores`` order; with the content's RGB mean and covariance (preserve_color)."""

    size: tuple[int, int]
    feats: tuple[torch.Tensor, ...]
    moments: tuple[torch.Tensor, torch.Tensor]
    tile: int = 0

    @property
    def nbytes(self) -> int:
        return sum(f.numel() * f.element_size() for f in self.feats)


@dataclass(frozen=True)
class Plan:
    """One image ready for the network. ``codes``: one (already mixed) style code, or the
    foreground and background codes with ``mask``, an (H, W) float tensor at the content's size
    (white = 1 = ``codes[0]``). ``features``: the content's encoder output when it is known (then
    ``content`` may be None: the network never needs its pixels)."""

    content: Image.Image | None
    codes: tuple[StyleCode, ...]
    alpha: float
    color_match: float
    mask: torch.Tensor | None = None
    features: ContentFeatures | None = None
    matching: str = "adain"

    @property
    def size(self) -> tuple[int, int]:
        """(w, h) of the content, which is the output's size; plans of one size batch together."""
        return self.features.size if self.features is not None else self.content.size


def check_combination(styles: Sequence[object], options: Options, masked: bool) -> None:
    """The rules between the inputs (the weights' own rules are ``normalise_weights``')."""
    if masked and len(styles) != 2:
        raise InputError(f"a mask needs exactly 2 styles (foreground, background), got {len(styles)}")
    if masked and options.weights:
        raise InputError("weights do not apply with a mask: each region gets its own style")
    if options.preserve_color and any(isinstance(s, StyleCode) for s in styles):
        raise InputError("preserve_color needs style images; registered style codes cannot be recoloured")
    if options.matching == "efdm" and any(isinstance(s, StyleCode) and s.quantiles is None for s in styles):
        raise InputError("matching efdm needs each style's feature distribution, which a style registered "
                         "before it was kept does not have: register that style again")
