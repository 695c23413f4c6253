"""EFDM (model/efdm.py): the content's relu4_1 takes the style's sorted values, mixes are averages
of quantile functions, and tiles read each value's rank in the whole image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import psnr
from model.adain import mix, transfer
from model.efdm import QUANTILES, Ranks, crowded_ranks, efdm, even_ranks, quantiles
from model.images import to_tensor
from model.paths import PRESETS_DIR
from model.plan import Options
from model.stylizer import Stylizer
from model.tiling import Tiled

SIDE = 128  # px: relu4_1 of 16 x 16 = 256 positions
EVEN = even_ranks(256)  # a table of every one of them


def relu4_1(stylizer: Stylizer, img: Image.Image) -> torch.Tensor:
    return stylizer.encoder(stylizer.net_input(to_tensor(img))).float()


def photo(name: str, side: int) -> Image.Image:
    img = Image.open(PRESETS_DIR / name).convert("RGB")
    return img.resize((side, side), Image.Resampling.BICUBIC)


def test_the_content_takes_the_styles_sorted_values(stylizer):
    """A table of the style's every value is its sorted values, and a content of as many
    positions takes them exactly, in its own order; its zeros (ReLU) take one value, the mean of
    the style's values at their ranks."""
    content_feat = relu4_1(stylizer, photo("swamp.jpg", SIDE))
    style_feat = relu4_1(stylizer, photo("battlefield.jpg", SIDE))
    code = stylizer.encode_style(photo("battlefield.jpg", SIDE), style_size=0)
    code = dataclasses.replace(code, quantiles=quantiles(style_feat, EVEN))
    style_sorted = style_feat.reshape(512, -1).sort(dim=1).values
    assert code.quantiles.values.shape == style_sorted.shape == (512, 256)
    torch.testing.assert_close(code.quantiles.values.float(), style_sorted.half().float(), rtol=0, atol=0)

    out = transfer(content_feat, code, "efdm").reshape(512, -1)
    c = content_feat.reshape(512, -1)
    table = code.quantiles.values.float()
    zeros = (c <= 0).sum(dim=1)
    assert ((zeros > 0) & (zeros < 256)).float().mean() > 0.8  # the test means something: both kinds
    ranks = c.argsort(dim=1).argsort(dim=1)
    positive = c > 0
    expected = table.gather(1, ranks)
    assert torch.equal(out[positive], expected[positive])  # exactly: each value is the style's at its rank
    for ch in range(0, 512, 37):  # the zeros: one value, the mean of the style's lowest values
        z = int(zeros[ch])
        assert z == 0 or torch.allclose(out[ch][~positive[ch]], table[ch, :z].mean().expand(z), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.mean(dim=1), table.mean(dim=1), rtol=1e-5, atol=1e-5)
    # AdaIN gives the mean too, but not the distribution: EFDM's is the style's, AdaIN's is not
    adain_out = transfer(content_feat, code, "adain").reshape(512, -1)
    some = zeros < 192  # channels whose top quarter of ranks holds no zeros
    gap = lambda x: (x[some].sort(dim=1).values[:, 192:] - table[some, 192:]).abs().mean()  # noqa: E731
    assert gap(out) < 1e-6 < 0.05 * table.mean() < gap(adain_out)


def test_a_styles_table_keeps_its_sorted_values_at_ranks_crowded_to_the_top(stylizer):
    """A style code's table: the sorted values read at QUANTILES ranks, from the smallest to the
    largest, closer together towards the top; it follows the whole distribution more closely than
    as many even ranks would."""
    feat = torch.rand(1, 512, 64, 64) ** 3
    table = quantiles(feat)
    ranks = table.ranks
    assert torch.equal(ranks, crowded_ranks()) and len(ranks) == QUANTILES and ranks[0] == 0 and ranks[-1] == 1
    gaps = ranks[1:] - ranks[:-1]
    assert bool((gaps[1:] < gaps[:-1]).all())  # crowded towards the top
    sorted_values = feat.reshape(512, -1).sort(dim=1).values
    at = (ranks * 4095).round().long()
    torch.testing.assert_close(table.values.float(), sorted_values[:, at].half().float(), atol=2e-3, rtol=2e-3)
    # on a real style: the content given this table is closer to the content given every value
    # than with 8 times as many even ranks
    style = relu4_1(stylizer, photo("battlefield.jpg", 256))
    content = relu4_1(stylizer, photo("swamp.jpg", 256))
    exact = efdm(content, quantiles(style, even_ranks(32 * 32)))
    error = lambda t: float((efdm(content, t) - exact).pow(2).mean())  # noqa: E731
    assert error(quantiles(style)) < error(quantiles(style, even_ranks(8 * QUANTILES)))


def test_mixed_styles_average_their_sorted_values(stylizer):
    a = stylizer.encode_style(photo("battlefield.jpg", SIDE), style_size=0)
    b = stylizer.encode_style(photo("autumn-fall.jpg", SIDE), style_size=0)
    content = torch.rand(1, 512, 16, 16) + 0.01  # no zeros: every value takes a rank's value
    one = mix([a, b], [1, 0])
    assert torch.equal(transfer(content, one, "efdm"), transfer(content, a, "efdm"))
    both = transfer(content, mix([a, b], [1, 3]), "efdm").reshape(512, -1).sort(dim=1).values
    ranks = even_ranks(256)
    torch.testing.assert_close(both, 0.25 * a.quantiles.at(ranks) + 0.75 * b.quantiles.at(ranks))


def test_weights_one_and_zero_render_the_first_style(stylizer):
    content, styles = photo("swamp.jpg", 96), [photo("battlefield.jpg", 96), photo("autumn-fall.jpg", 96)]
    kw = dict(content_size=0, style_size=0, matching="efdm")
    first = stylizer.stylize(content, styles[:1], **kw)
    assert np.array_equal(np.asarray(stylizer.stylize(content, styles, weights=[1, 0], **kw)), np.asarray(first))
    assert psnr(stylizer.stylize(content, styles, weights=[1, 1], **kw), first) < 40


def test_options_refuse_an_unknown_matching_and_codes_without_a_distribution(stylizer, content, style):
    with pytest.raises(ValueError, match="matching"):
        Options(matching="wct")
    code = stylizer.encode_style(style)
    old = type(code)(code.mean, code.std, code.rgb_mean, code.rgb_cov)  # stored before codes kept one
    with pytest.raises(ValueError, match="register that style again"):
        stylizer.prepare(content, [old], Options(matching="efdm"))
    stylizer.prepare(content, [old], Options())  # AdaIN needs only the mean and std


def test_ranks_from_parts_give_the_whole_images_ranks():
    torch.manual_seed(3)
    feat = torch.relu(torch.randn(1, 512, 120, 90) * torch.rand(1, 512, 1, 1) * 3)
    table = quantiles(torch.relu(torch.randn(1, 512, 64, 64) + 0.5))
    top = float(table.values.float().max())
    ranks = Ranks()
    for part in feat.reshape(512, -1).split(1000, dim=1):
        ranks.add(part)
    whole, tiled = efdm(feat, table), ranks.transfer(feat, table)
    assert ranks.n == 120 * 90
    assert (whole - tiled).abs().max() < 0.05 * top
    assert float((whole - tiled).pow(2).mean().sqrt()) < 1e-3 * top


@pytest.mark.parametrize("case", ["plain", "mask"])
def test_efdm_tiles_give_the_whole_pass(stylizer, case):
    content = photo("swamp.jpg", 200).crop((0, 0, 200, 148))
    styles = [photo("battlefield.jpg", 96), photo("autumn-fall.jpg", 96)]
    mask = None
    if case == "mask":
        mask = Image.new("L", content.size, 0)
        mask.paste(255, (0, 0, 90, 148))
    plan = stylizer.prepare(content, styles if mask else styles[:1], Options(content_size=0, style_size=0,
                                                                            matching="efdm"), mask)
    whole = stylizer.render([plan])[0]
    tiled = Tiled(stylizer, plan, tile=64, margin=64).render()
    assert psnr(whole, tiled) >= 40


def test_efdm_tiles_match_the_whole_pass_at_1500_px(decoder_path):
    """The issue's size: 188² relu4_1 positions per channel, tiles of 512 px with their margins."""
    stylizer = Stylizer.load(decoder_path, device="cpu", precision="fp32", tile=512)
    content = photo("swamp.jpg", 1500)
    plan = stylizer.prepare(content, [photo("battlefield.jpg", 256)], Options(content_size=0, style_size=0,
                                                                             matching="efdm"))
    tiled = stylizer.render([plan])[0]
    assert stylizer.tiled(plan.size)
    whole = stylizer.render_whole([plan])[0]
    assert whole.size == tiled.size == (1500, 1500)
    assert psnr(whole, tiled) >= 40
