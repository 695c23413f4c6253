"""fp32 CPU convolutions by Winograd (NNPACK) draw the same pictures as direct convolution, at
plain, odd and tiled sizes; the automatic choice is measured per layer and size; training keeps
PyTorch's own convolution (gradients flow)."""

from __future__ import annotations

import pytest
import torch

from helpers import noise_image, psnr
from model import convs
from model.plan import Options
from model.stylizer import Stylizer

pytestmark = pytest.mark.skipif(not convs.winograd_available(), reason="this torch has no NNPACK")


@pytest.fixture(scope="module")
def pair(decoder_path):
    """The same weights with every 3x3 conv direct, and with every one by Winograd."""
    return (Stylizer.load(decoder_path, device="cpu", precision="fp32", conv="direct", tile=512),
            Stylizer.load(decoder_path, device="cpu", precision="fp32", conv="winograd", tile=512))


@pytest.mark.parametrize("size", [(256, 256), (512, 512), (333, 201), (640, 600)])
def test_winograd_draws_the_pictures_direct_convolution_draws(pair, size, monkeypatch):
    direct, winograd = pair
    calls = []
    real = torch._nnpack_spatial_convolution
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", lambda *a: calls.append(1) or real(*a))
    content, style = noise_image(*size, seed=1), noise_image(96, 96, seed=2)
    a = direct.stylize(content, [style], content_size=0, style_size=0)
    n_direct = len(calls)
    b = winograd.stylize(content, [style], content_size=0, style_size=0)
    assert n_direct == 0 and len(calls) >= 18  # the Winograd model really ran by Winograd
    assert a.size == b.size == size and psnr(a, b) >= 60, psnr(a, b)
    assert winograd.tiled(size) == (size == (640, 600))  # the last size in 4 tiles of up to 512²


def test_auto_measures_each_layer_once_per_size_and_keeps_the_picture(decoder_path, pair, monkeypatch):
    auto = Stylizer.load(decoder_path, device="cpu", precision="fp32", conv="auto")
    measured = []
    real = convs.FastConv2d._measure
    monkeypatch.setattr(convs.FastConv2d, "_measure", lambda self, x, key: measured.append(key) or real(self, x, key))
    content, style = noise_image(256, 192, seed=3), noise_image(64, 64, seed=4)
    out = auto.stylize(content, [style], content_size=0, style_size=0)
    chosen, first = auto.convolutions, len(measured)
    assert set(chosen) <= {"direct", "winograd"} and sum(chosen.values()) == first >= 18
    auto.stylize(content, [style], content_size=0, style_size=0)
    assert len(measured) == first and auto.convolutions == chosen  # once per layer and size bucket
    assert psnr(out, pair[0].stylize(content, [style], content_size=0, style_size=0)) >= 60


def test_bf16_and_training_keep_pytorchs_own_convolutions(decoder_path):
    assert Stylizer.load(decoder_path, device="cpu", precision="bf16").convolutions == {}
    conv = torch.nn.Conv2d(8, 8, 3)
    convs.install(torch.nn.Sequential(conv), "winograd")
    x = torch.randn(1, 8, 12, 12, requires_grad=True)
    conv(x).sum().backward()  # with grad: PyTorch's convolution, so autograd works
    assert x.grad is not None and conv.weight.grad is not None
    with torch.inference_mode():
        assert torch.allclose(conv(x.detach()), torch.nn.functional.conv2d(x.detach(), conv.weight, conv.bias),
                              atol=1e-4)


def test_batches_render_as_single_images_do(pair):
    """Micro-batching (ADAIN_BATCH_MAX) through Winograd: each image as when drawn alone."""
    _, winograd = pair
    style = winograd.encode_style(noise_image(64, 64, seed=5), 64)
    plans = [winograd.prepare(noise_image(128, 96, seed=6 + i), [style], Options(content_size=0)) for i in range(2)]
    together = winograd.render(plans)
    for plan, out in zip(plans, together):
        assert psnr(out, winograd.render([plan])[0]) >= 60
