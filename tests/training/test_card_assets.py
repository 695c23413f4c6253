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


@pytest.fixture(scope="module")
def card_data(tmp_path_factory) -> dict[str, Path]:
    from helpers import noise_image
    from model.decoder import random_decoder, save_decoder
    from training.losses import STYLE_LAYERS
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("card")
    for kind, seed in (("content", 0), ("style", 10)):
        (root / "data" / "val" / kind).mkdir(parents=True)
        for i in range(2):
            noise_image(40, 36, seed=seed + i).save(root / "data" / "val" / kind / f"{kind}{i}.jpg")
    save_file({name: torch.ones(c) for name, c in zip(STYLE_LAYERS, (64, 128, 256, 512))}, root / "scales.safetensors")
    mid_grey = random_decoder(3)
    with torch.no_grad():  # as tests/conftest.py: mid-range colours, not black, so the colour step has work to do
        mid_grey[28].weight.mul_(10.0)
        mid_grey[28].bias.fill_(0.5)
    return {"root": root, "decoder": save_decoder(random_decoder(3), root / "w", "safetensors"),
            "mid_grey": save_decoder(mid_grey, root / "w2", "safetensors")}


def run_script(assets, monkeypatch, capsys, card_data, *extra: str, decoder: str = "decoder") -> list[dict]:
    import json

    root = card_data["root"]
    monkeypatch.setattr("sys.argv", ["model_card_assets.py", "--data", str(root / "data"), "--candidates",
                                     str(card_data[decoder]), "--size", "32", "--precision", "fp32",
                                     "--scales", str(root / "scales.safetensors"), "--out", str(root / "out"),
                                     "--grid-contents", "1", "--grid-styles", "0", "1", *extra])
    assets.main()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_norm_only_measures_one_pass_and_pairs_0_only_draws(assets, monkeypatch, capsys, card_data):
    both = run_script(assets, monkeypatch, capsys, card_data, "--pairs", "2", "--no-figures")[0]
    quick = run_script(assets, monkeypatch, capsys, card_data, "--pairs", "2", "--no-figures", "--norm-only")[0]
    assert both["pairs"] == quick["pairs"] == 4 and "style_relu1_1" in both and "style" not in quick
    for key in ("content", "norm_style", "norm_style_relu1_1", "grid8", "flipgap"):
        assert quick[key] == pytest.approx(both[key], rel=1e-5), key  # the same numbers, in one pass
    assert not (card_data["root"] / "out" / "samples.jpg").exists()
    assert run_script(assets, monkeypatch, capsys, card_data, "--pairs", "0") == []  # nothing measured
    from PIL import Image

    assert Image.open(card_data["root"] / "out" / "samples.jpg").size == (3 * 192, 2 * 192)


def test_grid_indices_past_the_folder_fail_before_measuring(assets, monkeypatch, capsys, card_data):
    """A style folder smaller than the default grid (e.g. the 8 paintings) fails at once, naming the flag,
    instead of after minutes of measuring; --no-figures draws nothing, so it does not care."""
    with pytest.raises(SystemExit) as stop:
        run_script(assets, monkeypatch, capsys, card_data, "--pairs", "2", "--grid-styles", "0", "5")
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert "{" not in captured.out  # no decoder was measured first
    last = captured.err.splitlines()[-1]  # after argparse's usage lines
    assert last == "model_card_assets.py: error: index out of range: --grid-styles 5 (2 images there)"
    assert run_script(assets, monkeypatch, capsys, card_data, "--pairs", "2", "--no-figures", "--grid-styles", "5")


def test_color_match_measures_and_draws_the_products_output(assets, monkeypatch, capsys, card_data):
    """--color-match measures the output after the colour step (closer colour statistics, the
    decoder's own flip gaps), and --compare-color-matches draws one candidate once per step."""
    plain, matched = (run_script(assets, monkeypatch, capsys, card_data, "--pairs", "2", "--no-figures",
                                 "--norm-only", "--color-match", c, decoder="mid_grey")[0] for c in ("0", "1"))
    assert plain["color_match"] == 0 and matched["color_match"] == 1
    assert matched["norm_style_relu1_1"] < 0.95 * plain["norm_style_relu1_1"]  # colour statistics closer
    assert matched["flipgap_pipeline"] == pytest.approx(plain["flipgap_pipeline"])
    run_script(assets, monkeypatch, capsys, card_data, "--pairs", "0", "--compare", "0,1", "1,0",
               "--compare-color-matches", "0", "0.5")
    from PIL import Image

    assert Image.open(card_data["root"] / "out" / "compare.jpg").size == (2 * 384, 2 * 384)
