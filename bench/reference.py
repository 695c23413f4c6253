"""The reference PyTorch port's algorithm as it is written (naoto0804/pytorch-AdaIN, test.py and
function.py), the baseline of bench/perf.py: fp32, ``torch.no_grad()``, content *and* style encoded
on every call by one plain contiguous ``nn.Sequential``, no caching, torchvision transforms in and
``save_image``'s conversion out. Only the file write is left out (ours returns an image too)."""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn
from torchvision import transforms


def calc_mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    n, c = feat.size()[:2]
    feat_var = feat.view(n, c, -1).var(dim=2) + eps
    feat_std = feat_var.sqrt().view(n, c, 1, 1)
    feat_mean = feat.view(n, c, -1).mean(dim=2).view(n, c, 1, 1)
    return feat_mean, feat_std


def adaptive_instance_normalization(content_feat: torch.Tensor, style_feat: torch.Tensor) -> torch.Tensor:
    size = content_feat.size()
    style_mean, style_std = calc_mean_std(style_feat)
    content_mean, content_std = calc_mean_std(content_feat)
    normalized_feat = (content_feat - content_mean.expand(size)) / content_std.expand(size)
    return normalized_feat * style_std.expand(size) + style_mean.expand(size)


def style_transfer(vgg: nn.Module, decoder: nn.Module, content: torch.Tensor, style: torch.Tensor,
                   alpha: float = 1.0) -> torch.Tensor:
    content_f = vgg(content)
    style_f = vgg(style)
    feat = adaptive_instance_normalization(content_f, style_f)
    feat = feat * alpha + content_f * (1 - alpha)
    return decoder(feat)


def test_transform(size: int) -> transforms.Compose:
    return transforms.Compose([transforms.Resize(size), transforms.ToTensor()])


def to_pil(t: torch.Tensor) -> Image.Image:
    """torchvision.utils.save_image's conversion, without writing the file."""
    nd = t[0].mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    return Image.fromarray(nd)


class Reference:
    """The reference test.py's per-image work with our weights (same layers, same values)."""

    def __init__(self, vgg: nn.Sequential, decoder: nn.Sequential, device: torch.device) -> None:
        self.vgg = vgg.float().to(device).eval()
        self.decoder = decoder.float().to(device).eval()
        self.device = device

    def __call__(self, content: Image.Image, style: Image.Image, size: int) -> Image.Image:
        tf = test_transform(size)
        c = tf(content).to(self.device).unsqueeze(0)
        s = tf(style).to(self.device).unsqueeze(0)
        with torch.no_grad():
            out = style_transfer(self.vgg, self.decoder, c, s)
        return to_pil(out.cpu())
