"""The fixed calibration set: the colour and texture images bundled in the scikit-image 0.26.0 wheel
(public domain / CC0 per skimage.data), each resized with Pillow bicubic so its shorter side is 256 px.
It calibrates the encoder's normalisation factors (training/calibrate.py) and the int8 graphs'
activation ranges (model/ort.py). scikit-image is only needed by those two steps (the dev and onnx
extras), never to serve fp32 or bf16."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from model.images import open_image, resize_shorter, to_tensor

CALIBRATION_IMAGES = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "grass.png",
    "gravel.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png", "retina.jpg",
    "rocket.jpg",
)
CALIBRATION_SIZE = 256


def calibration_images() -> list[torch.Tensor]:
    """The calibration set as float32 tensors (1, 3, H, W) in [0, 1]."""
    data = resources.files("skimage") / "data"
    return [to_tensor(resize_shorter(open_image(Path(str(data / n))), CALIBRATION_SIZE))
            for n in CALIBRATION_IMAGES]
