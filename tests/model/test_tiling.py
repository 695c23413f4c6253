"""Tiled rendering (model/tiling.py): the same picture as one whole pass, no seams at the tile
borders, with every option that needs the whole image (AdaIN statistics, masks, the colour step,
colour preservation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import noise_image, psnr
from model.plan import Options
from model.stylizer import Stylizer
from model.tiling import Tiled, cores, needs_tiles


def seam_ratio(a, b, tile: int) -> float:
    """Mean difference within 2 px of a tile border over the mean difference elsewhere."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean(axis=2)
    border = np.zeros(d.shape, bool)
    for k in range(tile, d.shape[0], tile):
        border[k - 2:k + 2] = True
    for k in range(tile, d.shape[1], tile):
        border[:, k - 2:k + 2] = True
    return float(d[border].mean() / max(d[~border].mean(), 1e-9))


@pytest.fixture(scope="module")
def inputs():
    content = noise_image(200, 148, seed=5)  # not a multiple of the tile, nor of 8
    mask = Image.new("L", content.size, 0)
    mask.paste(255, (0, 0, 90, 148))
    return content, [noise_image(64, 64, seed=6), noise_image(64, 64, seed=7)], mask


@pytest.mark.parametrize("case", ["plain", "alpha and full colour step", "mask", "preserve colour"])
def test_tiles_give_the_whole_pass_without_seams(stylizer, inputs, case):
    content, styles, mask = inputs
    options = {"plain": Options(content_size=0, style_size=0),
               "alpha and full colour step": Options(content_size=0, style_size=0, alpha=0.6, color_match=1.0),
               "mask": Options(content_size=0, style_size=0),
               "preserve colour": Options(content_size=0, style_size=0, preserve_color=True)}[case]
    plan = stylizer.prepare(content, styles if case == "mask" else styles[:1], options,
                            mask if case == "mask" else None)
    whole = stylizer.render([plan])[0]
    tiled = Tiled(stylizer, plan, tile=64, margin=64).render()
    assert tiled.size == whole.size == (200, 148)
    # left over: rounding, and the colour step applied to 8-bit pixels instead of floats
    assert np.abs(np.asarray(whole, np.int16) - np.asarray(tiled, np.int16)).max() <= 3
    assert psnr(whole, tiled) >= 45 and seam_ratio(whole, tiled, 64) < 1.3


def test_a_margin_smaller_than_the_receptive_field_shows_seams(stylizer, inputs):
    """The seam measure above can fail: cores cut with too little image around them differ from
    the whole pass along their borders."""
    content, styles, _ = inputs
    plan = stylizer.prepare(content, styles[:1], Options(content_size=0, style_size=0))
    whole = stylizer.render([plan])[0]
    assert seam_ratio(whole, Tiled(stylizer, plan, tile=64, margin=16).render(), 64) > 1.5


def test_the_stylizer_tiles_what_is_larger_than_a_tile_and_reports_progress(decoder_path, inputs):
    content, styles, _ = inputs
    small = Stylizer.load(decoder_path, device="cpu", precision="fp32", tile=64)
    plan = small.prepare(content, styles[:1], Options(content_size=0, style_size=0))
    seen: list[tuple[int, int]] = []
    out = small.render([plan], progress=lambda done, total: seen.append((done, total)))[0]
    n = len(cores(200, 148, 64))
    assert out.size == (200, 148) and n == 12 and seen[-1] == (2 * n + 1, 2 * n + 1) and len(seen) == 2 * n + 1
    assert needs_tiles((65, 64), 64) and not needs_tiles((64, 64), 64)
    with pytest.raises(ValueError, match="multiples of 8"):
        Tiled(small, plan, tile=60)


@pytest.mark.parametrize("tiled", [False, True])
def test_kept_content_features_render_the_same_picture(stylizer, decoder_path, inputs, tiled):
    """An update renders from the content's kept features (float16, encoded once): the picture of
    a render from the image, whole or in tiles, with and without a mask, and with preserve_color."""
    st = Stylizer.load(decoder_path, device="cpu", precision="fp32", tile=64) if tiled else stylizer
    content, styles, mask = inputs
    kept = st.encode_content(content)
    assert kept.nbytes == st.feature_bytes(content.size) and kept.feats[0].dtype == torch.float16
    assert len(kept.feats) == (len(cores(200, 148, 64)) if tiled else 1)
    for options, mask_, chosen in ((Options(content_size=0, style_size=0, alpha=0.7), None, styles[:1]),
                                   (Options(content_size=0, style_size=0), mask, styles),
                                   (Options(content_size=0, style_size=0, preserve_color=True), None, styles[:1]),
                                   (Options(content_size=0, style_size=0, matching="efdm"), mask, styles)):
        fresh = st.render([st.prepare(content, chosen, options, mask_)])[0]
        again = st.render([st.prepare(kept, chosen, options, mask_)])[0]
        assert again.size == fresh.size and psnr(fresh, again) >= 60, (options, mask_ is not None)
