"""Stylizer behaviour: sizes, modes, styles as images or codes, masks, colour preservation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import noise_image
from model.adain import StyleCode, coral, mix
from model.errors import InputError, OutOfRange
from model.images import to_tensor
from model.plan import Options
from model.stylizer import Stylizer, pad_to_multiple


def test_style_code_is_small(stylizer, style):
    code = stylizer.encode_style(style, style_size=0)
    assert code.mean.shape == code.std.shape == (512,)
    table = code.quantiles  # EFDM's: 32 points per channel
    assert table.values.shape == (512, 32) and table.values.dtype == torch.float16 and table.ranks.shape == (32,)
    # mean and std, RGB mean and covariance, the table
    assert code.mean.dtype == torch.float32 and code.nbytes == 4096 + 12 * 8 + 512 * 32 * 2 + 32 * 8
    assert (code.std > 0).all()
    pixels = to_tensor(style).reshape(3, -1).double()
    torch.testing.assert_close(code.rgb_mean, pixels.mean(dim=1))
    torch.testing.assert_close(code.rgb_cov, torch.cov(pixels, correction=0), atol=2e-5, rtol=1e-3)


@pytest.mark.parametrize("w, h", [(333, 517), (17, 9), (1, 1), (5, 300), (64, 64)])
def test_output_has_exactly_the_content_size(stylizer, style, w, h):
    out = stylizer.stylize(noise_image(w, h, seed=3), [style], content_size=0, style_size=64)
    assert out.mode == "RGB" and out.size == (w, h)


def test_content_size_resizes_shorter_side(stylizer, style):
    out = stylizer.stylize(noise_image(90, 60), [style], content_size=40, style_size=64)
    assert out.size == (60, 40)


def make_mode(mode: str) -> bytes | Image.Image:
    base = noise_image(40, 30, seed=5)
    if mode == "I;16":
        return Image.fromarray((np.asarray(base.convert("L"), np.uint16) * 257))
    if mode == "P+transparency":
        buf = io.BytesIO()
        base.convert("P").save(buf, "PNG", transparency=0)
        return buf.getvalue()
    if mode == "exif-jpeg":
        exif = Image.Exif()
        exif[0x0112] = 8
        buf = io.BytesIO()
        base.save(buf, "JPEG", exif=exif.tobytes())
        return buf.getvalue()
    return base.convert(mode)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "P+transparency", "CMYK", "1", "I;16", "I", "F",
                                  "YCbCr", "exif-jpeg"])
def test_every_image_mode_is_accepted(stylizer, style, mode):
    content = make_mode(mode)
    out = stylizer.stylize(content, [make_mode(mode)], content_size=0, style_size=0)
    assert out.mode == "RGB"
    assert out.size == ((30, 40) if mode == "exif-jpeg" else (40, 30))


def test_codes_and_images_give_the_same_result(stylizer, content, style):
    code = stylizer.encode_style(style, style_size=64)
    a = stylizer.stylize(content, [style], style_size=64, content_size=0)
    b = stylizer.stylize(content, [code], content_size=0)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_interpolation_through_stylizer_equals_mixed_code(stylizer, content):
    codes = [stylizer.encode_style(noise_image(64, 64, seed=s), 0) for s in (10, 11, 12)]
    a = stylizer.stylize(content, codes, weights=[3, 1, 0], content_size=0)
    b = stylizer.stylize(content, [mix(codes, [0.75, 0.25, 0.0])], content_size=0)
    assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1
    single = stylizer.stylize(content, [codes[1]], content_size=0)
    one_hot = stylizer.stylize(content, codes, weights=[0, 1, 0], content_size=0)
    assert np.array_equal(np.asarray(single), np.asarray(one_hot))


def test_alpha_changes_the_output_monotonically(stylizer, content, style):
    outs = [np.asarray(stylizer.stylize(content, [style], alpha=a, content_size=0, style_size=64), np.float32)
            for a in (0.0, 0.5, 1.0)]
    assert np.abs(outs[0] - outs[2]).mean() > np.abs(outs[0] - outs[1]).mean() > 0


def test_preserve_color_encodes_the_recoloured_style(stylizer, content, style, monkeypatch):
    seen = []
    real = stylizer.encode_style

    def spy(image, style_size=512, recolor_to=None):
        seen.append(recolor_to)
        return real(image, style_size, recolor_to)

    monkeypatch.setattr(stylizer, "encode_style", spy)
    stylizer.stylize(content, [style], preserve_color=True, content_size=0, style_size=0)
    assert seen and seen[0] is not None and seen[0].size == content.size
    # and the recoloured style carries the content's colour means
    recoloured = coral(to_tensor(style), to_tensor(content))
    torch.testing.assert_close(recoloured.mean(dim=(0, 2, 3)), to_tensor(content).mean(dim=(0, 2, 3)),
                               atol=0.01, rtol=0)


def tinted(seed: int, rgb: tuple[float, float, float], size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.fromarray((np.asarray(noise_image(*size, seed=seed), np.float32) * rgb).astype(np.uint8))


def mean_rgb(img: Image.Image, cols: slice = slice(None)) -> np.ndarray:
    return np.asarray(img, np.float64)[:, cols].reshape(-1, 3).mean(axis=0)


def test_color_match_moves_the_output_to_the_styles_colours(stylizer, content):
    style = tinted(30, (0.3, 0.9, 0.5))  # green
    outs = {c: stylizer.stylize(content, [style], content_size=0, style_size=0, color_match=c)
            for c in (0, 0.25, 0.5, 1)}
    gaps = {c: np.abs(mean_rgb(out) - mean_rgb(style)).max() for c, out in outs.items()}
    # in 8-bit levels: the mean arrives at 0.5, then only clamping and rounding are left
    assert max(gaps[0.5], gaps[1]) < 3 < gaps[0.25] < gaps[0], gaps
    spread = {c: np.asarray(out, np.float64).reshape(-1, 3).std(axis=0) for c, out in outs.items()}
    style_spread = np.asarray(style, np.float64).reshape(-1, 3).std(axis=0)
    assert np.abs(spread[1] - style_spread).max() < np.abs(spread[0.5] - style_spread).max()
    # and it scales with alpha: at alpha 0 (the content's own features) it does nothing
    a0 = [stylizer.stylize(content, [style], alpha=0, content_size=0, style_size=0, color_match=c) for c in (0, 1)]
    assert np.array_equal(np.asarray(a0[0]), np.asarray(a0[1]))


def test_render_gives_each_image_its_own_color_match(stylizer, content):
    code = stylizer.encode_style(tinted(31, (0.9, 0.4, 0.3)), 0)
    plans = [stylizer.prepare(content, [code], Options(color_match=c, content_size=0)) for c in (0.0, 1.0)]
    batch = stylizer.render(plans)
    alone = [stylizer.render([p])[0] for p in plans]
    for b, a in zip(batch, alone):
        assert np.abs(np.asarray(b, np.int16) - np.asarray(a, np.int16)).max() <= 1
    assert np.abs(np.asarray(batch[0], np.int16) - np.asarray(batch[1], np.int16)).mean() > 5
    with pytest.raises(ValueError, match="one size"):
        stylizer.render([plans[0], stylizer.prepare(content, [code], Options(content_size=32))])


def test_a_code_without_colours_gets_no_colour_step(stylizer, content, style):
    code = stylizer.encode_style(style, 0)
    bare = StyleCode(code.mean, code.std)
    a, b = (np.asarray(stylizer.stylize(content, [c], content_size=0, color_match=1)) for c in (bare, code))
    assert np.array_equal(a, np.asarray(stylizer.stylize(content, [code], content_size=0, color_match=0)))
    assert not np.array_equal(a, b)


def test_mask_moves_each_region_to_its_own_styles_colours(stylizer):
    content = noise_image(64, 64, seed=22)
    codes = [stylizer.encode_style(tinted(s, rgb), 0) for s, rgb in ((23, (1.0, 0.3, 0.2)), (24, (0.2, 0.4, 1.0)))]
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    plain, matched = (stylizer.stylize(content, codes, mask=mask, content_size=0, color_match=c) for c in (0, 1))
    for cols, code in ((slice(0, 32), codes[0]), (slice(32, 64), codes[1])):
        target = 255 * code.rgb_mean.numpy()
        assert np.abs(mean_rgb(matched, cols) - target).max() < 3 < np.abs(mean_rgb(plain, cols) - target).max()


def test_mask_applies_two_styles(stylizer, monkeypatch):
    """The decoder receives features whose masked regions carry each style's statistics, with the
    mask aligned to the content (left half white = first style)."""
    content = noise_image(64, 64, seed=20)
    styles = [noise_image(64, 64, seed=21), Image.new("RGB", (64, 64), (20, 200, 40))]
    codes = [stylizer.encode_style(s, 0) for s in styles]
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (0, 0, 16, 32))
    seen = []
    decoder = stylizer.decoder
    monkeypatch.setattr(stylizer, "decoder", lambda t: seen.append(t) or decoder(t))
    both = np.asarray(stylizer.stylize(content, codes, mask=mask, content_size=0), np.float32)
    t = seen[0][0].float().reshape(512, 8, 8)
    for cols, code in ((slice(0, 4), codes[0]), (slice(4, 8), codes[1])):
        part = t[:, :, cols].reshape(512, -1)
        torch.testing.assert_close(part.mean(dim=1), code.mean, atol=1e-3, rtol=1e-3)
    first = np.asarray(stylizer.stylize(content, codes[:1], content_size=0), np.float32)
    second = np.asarray(stylizer.stylize(content, codes[1:], content_size=0), np.float32)
    # and in pixels, away from the seam, each half resembles its own style's rendering
    assert np.abs(both[:, :24] - first[:, :24]).mean() < np.abs(both[:, :24] - second[:, :24]).mean()
    assert np.abs(both[:, 40:] - second[:, 40:]).mean() < np.abs(both[:, 40:] - first[:, 40:]).mean()


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_styles=3, mask=True), "exactly 2 styles"),
    (dict(n_styles=2, mask="wrong-aspect"), "aspect"),
    (dict(n_styles=2, mask=True, weights=[1, 2]), "weights do not apply"),
    (dict(n_styles=9), "between 1 and 8"),
    (dict(n_styles=1, alpha=1.2), "alpha"),
    (dict(n_styles=1, color_match=-0.1), "color_match"),
    (dict(n_styles=2, weights=[1.0, -1.0]), ">= 0"),
    (dict(n_styles=1, code=True, preserve_color=True), "preserve_color"),
])
def test_bad_requests_raise_the_models_input_error(stylizer, content, style, kwargs, message):
    n = kwargs.pop("n_styles")
    styles = [StyleCode(torch.ones(512), torch.ones(512))] * n if kwargs.pop("code", False) else [style] * n
    mask = kwargs.pop("mask", None)
    if mask is True:
        mask = Image.new("L", content.size, 255)
    elif mask == "wrong-aspect":
        mask = Image.new("L", (content.width, content.width), 255)
    kind = OutOfRange if message in ("alpha", "color_match") else InputError
    with pytest.raises(kind, match=message):
        stylizer.stylize(content, styles, mask=mask, content_size=0, style_size=64, **kwargs)


def test_pad_to_multiple_reflects_then_crops_back():
    x = torch.arange(2 * 3 * 10 * 13, dtype=torch.float32).reshape(2, 3, 10, 13)
    p = pad_to_multiple(x)
    assert p.shape[-2:] == (16, 16) and torch.equal(p[..., :10, :13], x)
    assert torch.equal(p[..., 10, :13], x[..., 8, :])  # reflection, not repetition
    assert pad_to_multiple(torch.zeros(1, 3, 2, 3)).shape[-2:] == (16, 16)


def test_bf16_matches_fp32_closely(decoder_path, content, style):
    fp32 = Stylizer.load(decoder_path, device="cpu", precision="fp32")
    bf16 = Stylizer.load(decoder_path, device="cpu", precision="bf16")
    a = np.asarray(fp32.stylize(content, [style], content_size=0, style_size=64), np.float64)
    b = np.asarray(bf16.stylize(content, [style], content_size=0, style_size=64), np.float64)
    psnr = 10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-9))
    assert psnr > 25, psnr
