"""training.calibrate: the encoder's normalisation factors, regenerated bit for bit."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from model.paths import VGG_SCALES
from model.vgg import Encoder, load_encoder
from model.calibration import calibration_images
from training.calibrate import compute_scales


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder()


def test_normalised_channels_average_one_on_calibration_images(encoder):
    images = calibration_images()
    scales = load_file(str(VGG_SCALES))
    with torch.inference_mode():
        means = [sum(f.mean(dim=(0, 2, 3)) for f in fs) / len(images)
                 for fs in zip(*(encoder.features(x) for x in images))]
    for layer, m in zip(("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1"), means):
        alive = m > 0  # a dead channel never fires (its factor stays 1)
        assert alive.sum() >= m.numel() - 2
        torch.testing.assert_close(m[alive], torch.ones(int(alive.sum())), atol=1e-4, rtol=0, msg=layer)
        assert (scales[layer][~alive] == 1).all()


def test_calibration_regenerates_factors_bit_for_bit():
    committed = load_file(str(VGG_SCALES))
    fresh = compute_scales(calibration_images())
    assert committed.keys() == fresh.keys()
    for name in committed:
        assert torch.equal(committed[name], fresh[name]), name
