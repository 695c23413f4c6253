"""AdaIN math: statistics, trade-off, interpolation, spatial control, colour transfer."""

from __future__ import annotations

import math

import pytest
import torch

from model.adain import (MAX_COLOR_GAIN, StyleCode, adain, blend, coral, masked, match_colors, mean_std,
                         mix, normalise_weights, resize_mask, rgb_stats)


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
    out = masked(content, fg, bg, m)
    for region, code in ((m, fg), (~m, bg)):
        part = out[0][:, region]  # (C, P)
        torch.testing.assert_close(part.mean(dim=1), code.mean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(part.std(dim=1), code.std, atol=2e-3, rtol=2e-3)


def test_mask_of_one_region_is_plain_adain():
    content = feats(0, shape=(1, 512, 8, 8))
    fg, bg = code_of(feats(1, scale=3.0)), code_of(feats(2))
    out = masked(content, fg, bg, torch.ones(8, 8, dtype=torch.bool))
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


def two_palettes() -> tuple[torch.Tensor, torch.Tensor]:
    """(3, P) pixels: a bluish image and a warm one with correlated channels, both inside [0, 1] so
    clamping does not enter, and with more contrast than the covariances' 1e-5 ridge can matter."""
    g = torch.Generator().manual_seed(1)
    source = (0.2 + 0.6 * torch.rand(3, 2000, generator=g)) * torch.tensor([0.6, 0.8, 1.0]).view(3, 1)
    base = torch.rand(1, 3000, generator=g)
    target = (0.2 + 0.5 * base + 0.1 * torch.rand(3, 3000, generator=g)) * torch.tensor([1.0, 0.8, 0.5]).view(3, 1)
    return source, target


def test_match_colors_at_full_strength_gives_the_targets_mean_and_covariance():
    source, target = two_palettes()
    mean, cov = rgb_stats(target)
    out = match_colors(source, mean, cov, 1.0)
    assert out.shape == source.shape and out.dtype == source.dtype
    got_mean, got_cov = rgb_stats(out)
    torch.testing.assert_close(got_mean, mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_cov, cov, atol=3e-5, rtol=1e-3)
    assert match_colors(source, mean, cov, 0.0) is source


@pytest.mark.parametrize("t, mean_part", [(0.25, 0.5), (0.5, 1.0), (0.75, 1.0)])
def test_match_colors_partway(t, mean_part):
    """The mean arrives at t = 0.5, the covariance moves along the transport path: M C_x M with
    M = (1-t) I + t A, A the symmetric transport matrix (not a blend of pixels)."""
    source, target = two_palettes()
    (mu_x, cov_x), (mu, cov) = rgb_stats(source), rgb_stats(target)
    full = match_colors(source, mu, cov, 1.0).double()
    a = torch.linalg.lstsq((source.double() - mu_x[:, None]).T, (full - mu[:, None]).T).solution.T
    torch.testing.assert_close(a, a.T, atol=1e-6, rtol=0)  # symmetric: no rotation of colours
    m = (1 - t) * torch.eye(3, dtype=a.dtype) + t * a
    got_mean, got_cov = rgb_stats(match_colors(source, mu, cov, t))
    torch.testing.assert_close(got_mean, mu_x + mean_part * (mu - mu_x), atol=1e-5, rtol=0)
    torch.testing.assert_close(got_cov, m @ cov_x @ m, atol=1e-6, rtol=1e-3)


def test_match_colors_moves_colours_less_than_coral():
    """Both reach the target statistics; the transport map is the one that changes pixels least."""
    source, target = two_palettes()
    ot = match_colors(source, *rgb_stats(target), 1.0)
    co = coral(source.view(1, 3, 40, 50), target.view(1, 3, 60, 50)).view(3, -1)
    torch.testing.assert_close(rgb_stats(co)[1], rgb_stats(ot)[1], atol=1e-5, rtol=1e-3)
    assert (ot - source).pow(2).sum() < (co - source).pow(2).sum()


def test_mixed_colours_are_the_pooled_pixels_statistics():
    source, target = two_palettes()
    target = target[:, :2000]  # equal sizes: equal weights then pool the pixels evenly
    codes = [StyleCode(torch.zeros(512), torch.ones(512), *rgb_stats(x)) for x in (source, target)]
    pooled_mean, pooled_cov = rgb_stats(torch.cat([source, target], dim=1))
    mixed = mix(codes)
    torch.testing.assert_close(mixed.rgb_mean, pooled_mean, atol=1e-6, rtol=0)  # float32 sums over pixels
    torch.testing.assert_close(mixed.rgb_cov, pooled_cov, atol=1e-7, rtol=1e-5)
    one_hot = mix(codes, [0, 1])
    torch.testing.assert_close(one_hot.rgb_cov, codes[1].rgb_cov)
    assert not mix([codes[0], StyleCode(torch.zeros(512), torch.ones(512))]).has_colors


def test_match_colors_does_not_blow_up_a_flat_image():
    """A nearly flat output (one level of noise) is not stretched to the style's contrast: the
    gain along any colour axis is capped, while the mean still arrives."""
    g = torch.Generator().manual_seed(2)
    flat = 0.5 + torch.rand(3, 4000, generator=g) / 255
    _, target = two_palettes()
    mean, cov = rgb_stats(target)
    out = match_colors(flat, mean, cov, 1.0)
    torch.testing.assert_close(rgb_stats(out)[0], mean, atol=1e-4, rtol=0)
    assert out.std(dim=1).max() <= MAX_COLOR_GAIN * flat.std(dim=1).max() * 1.01
