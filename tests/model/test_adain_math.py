"""AdaIN math: statistics, trade-off, interpolation, spatial control, colour transfer."""

from __future__ import annotations

import math

import pytest
import torch

from model.adain import StyleCode, adain, blend, coral, masked_adain, mean_std, mix, normalise_weights, resize_mask


def feats(seed: int, shape=(1, 512, 12, 10), scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) * scale + shift).relu()


def code_of(f: torch.Tensor) -> StyleCode:
    m, s = mean_std(f)
    return StyleCode(m.flatten(), s.flatten())


def test_adain_output_has_style_statistics():
    content, style = feats(0), feats(1, scale=3.0, shift=0.5)
    code = code_of(style)
    out = adain(content, code.mean, code.std)
    m, s = mean_std(out)
    torch.testing.assert_close(m.flatten(), code.mean, atol=1e-4, rtol=1e-4)
    # std of the output is sqrt(std_s^2 * var_c/(var_c+eps) + eps): equal up to eps effects
    torch.testing.assert_close(s.flatten(), code.std, atol=1e-3, rtol=1e-3)


def test_alpha_zero_returns_content_and_one_returns_target():
    content, style = feats(0), feats(1, scale=2.0)
    code = code_of(style)
    t = adain(content, code.mean, code.std)
    torch.testing.assert_close(blend(t, content, 0.0), content)
    torch.testing.assert_close(blend(t, content, 1.0), t)
    torch.testing.assert_close(blend(t, content, 0.25), 0.25 * t + 0.75 * content)
    with pytest.raises(ValueError):
        blend(t, content, 1.5)


def test_one_hot_interpolation_equals_single_style():
    codes = [code_of(feats(i, scale=i + 1.0)) for i in range(3)]
    one_hot = mix(codes, [0, 1, 0])
    torch.testing.assert_close(one_hot.mean, codes[1].mean)
    torch.testing.assert_close(one_hot.std, codes[1].std)


def test_interpolation_equals_adain_with_weighted_statistics():
    content = feats(0)
    codes = [code_of(feats(i + 1, scale=i + 1.0, shift=0.1 * i)) for i in range(3)]
    weights = [1.0, 2.0, 5.0]  # normalised to 1/8, 2/8, 5/8
    mixed = mix(codes, weights)
    w = [x / 8 for x in weights]
    mean = sum(wi * c.mean for wi, c in zip(w, codes))
    std = sum(wi * c.std for wi, c in zip(w, codes))
    torch.testing.assert_close(adain(content, mixed.mean, mixed.std), adain(content, mean, std))


@pytest.mark.parametrize("weights, message", [
    ([1, -1], ">= 0"), ([1, float("nan")], "finite"), ([0, 0], "all be zero"), ([1, 2, 3], "one weight per style"),
])
def test_bad_weights_are_rejected(weights, message):
    with pytest.raises(ValueError, match=message):
        normalise_weights(weights, 2)


def test_style_count_is_bounded():
    assert normalise_weights(None, 8) == [1 / 8] * 8
    with pytest.raises(ValueError, match="between 1 and 8"):
        normalise_weights(None, 9)
    with pytest.raises(ValueError):
        normalise_weights(None, 0)


def test_masked_regions_carry_their_own_style_statistics():
    content = feats(0, shape=(1, 512, 16, 16))
    fg, bg = code_of(feats(1, scale=4.0, shift=1.0)), code_of(feats(2, scale=0.5))
    mask = torch.zeros(64, 64)
    mask[:, :24] = 1.0  # left 3/8 foreground
    m = resize_mask(mask, (16, 16))
    assert m.shape == (16, 16) and m[:, :6].all() and not m[:, 6:].any()
    out = masked_adain(content, fg, bg, m)
    for region, code in ((m, fg), (~m, bg)):
        part = out[0][:, region]  # (C, P)
        torch.testing.assert_close(part.mean(dim=1), code.mean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(part.std(dim=1), code.std, atol=2e-3, rtol=2e-3)


def test_mask_of_one_region_is_plain_adain():
    content = feats(0, shape=(1, 512, 8, 8))
    fg, bg = code_of(feats(1, scale=3.0)), code_of(feats(2))
    out = masked_adain(content, fg, bg, torch.ones(8, 8, dtype=torch.bool))
    torch.testing.assert_close(out, adain(content, fg.mean, fg.std), atol=1e-5, rtol=1e-5)


def test_coral_gives_source_the_targets_colour_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    # source: bluish, low contrast, 40x50; target: warm, 70x30 (different sizes on purpose)
    source = (0.2 + 0.3 * torch.rand(1, 3, 40, 50, generator=g)) * torch.tensor([0.5, 0.7, 1.0]).view(1, 3, 1, 1)
    base = torch.rand(1, 1, 70, 30, generator=g)
    target = (0.3 + 0.4 * base + 0.1 * torch.rand(1, 3, 70, 30, generator=g)) * torch.tensor([1.0, 0.8, 0.5]).view(1, 3, 1, 1)
    out = coral(source, target)
    assert out.shape == source.shape
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), target.mean(dim=(0, 2, 3)), atol=2e-3, rtol=0)
    cov = lambda x: torch.cov(x.reshape(3, -1))  # noqa: E731
    torch.testing.assert_close(cov(out), cov(target), atol=2e-3, rtol=0.05)
    assert not math.isclose(out.mean().item(), source.mean().item(), abs_tol=0.05)
