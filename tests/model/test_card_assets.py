"""scripts/model_card_assets.py's pipeline direction measure, on stand-in networks whose bias is known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "model_card_assets.py"


@pytest.fixture(scope="module")
def assets():
    spec = importlib.util.spec_from_file_location("model_card_assets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Ramp(nn.Module):
    """A 'decoder' that brightens towards the bottom whatever its input: a fixed vertical bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.linspace(0, 0.5, x.shape[2]).view(1, 1, -1, 1)


def test_mirror_gaps_are_zero_for_a_pipeline_without_direction(assets):
    g = torch.Generator().manual_seed(0)
    contents, styles = torch.rand(2, 3, 16, 16, generator=g) * 0.5, torch.rand(3, 3, 16, 16, generator=g) * 0.5
    gaps = assets.mirror_gaps(nn.Identity(), nn.Identity(), contents, styles)  # AdaIN alone commutes with turns
    assert set(gaps) == {"mirror_v", "mirror_h", "mirror_t"}
    assert max(gaps.values()) < 0.5  # 8-bit levels: only rounding


def test_mirror_gaps_find_a_vertical_bias_on_the_axes_that_turn_it(assets):
    g = torch.Generator().manual_seed(1)
    contents, styles = torch.rand(2, 3, 16, 16, generator=g) * 0.3, torch.rand(3, 3, 16, 16, generator=g) * 0.3
    gaps = assets.mirror_gaps(nn.Identity(), Ramp(), contents, styles)
    assert gaps["mirror_v"] > 20 and gaps["mirror_t"] > 20  # upside down or transposed: the ramp turns
    assert gaps["mirror_h"] < 0.5  # left-right leaves a top-to-bottom ramp where it was
