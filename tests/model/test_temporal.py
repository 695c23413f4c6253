"""Temporal stability (model/temporal.py): the warping error, the grid alignment and blending, and
the reset at cuts. The target comparison runs the shipped decoder on a generated pan."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import clips
from model.images import to_tensor
from model.stylizer import Stylizer
from model.plan import Options
from model.temporal import Stabilizer, warping_error
from model.video import Frames
from model.paths import PRESETS_DIR, WEIGHTS_DIR
from training.evaluate import style_distance
from training.losses import load_style_scales


def test_warping_error_is_zero_for_outputs_that_move_with_the_scene():
    frames = clips.pan(96, 64, 6)
    assert warping_error(frames, frames) < 1e-3  # the input itself follows its own flow
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, f.shape, dtype=np.uint8) for f in frames]
    assert warping_error(frames, noise) > 0.1  # texture re-rolled every frame


def test_a_cut_starts_afresh():
    """After a cut the output is exactly what a fresh stabilizer makes of the new scene: nothing
    of the old scene is blended in."""
    frames = clips.cut(96, 64, 12)

    def render(canvas: np.ndarray) -> np.ndarray:  # any deterministic "stylization" shows it
        return 255 - canvas

    whole = Stabilizer()
    out = [whole(f, render) for f in frames]
    assert whole.cuts == 1
    fresh = Stabilizer()
    again = [fresh(f, render) for f in frames[6:]]
    assert all(np.array_equal(a, b) for a, b in zip(out[6:], again))
    assert fresh.cuts == 0


def test_the_blend_follows_a_moving_object_without_ghosts():
    """A disc crosses a still background: where it was, the output must show the background
    again at once (revealed pixels are not trusted), not a fading disc."""
    frames = clips.moving_shape(96, 64, 8)
    blended, aligned = Stabilizer(keep=0.9), Stabilizer(keep=0.0)  # the same canvas, with and without blending
    disc = [np.all(f == (235, 120, 30), axis=-1) for f in frames]
    for i, f in enumerate(frames):
        a, b = blended(f, lambda c: c), aligned(f, lambda c: c)
        if i:
            revealed = disc[i - 1] & ~disc[i]
            assert revealed.sum() > 20
            assert np.abs(a[revealed].astype(int) - b[revealed]).mean() < 8  # the disc is ~100 levels away


@pytest.fixture(scope="module")
def shipped() -> Stylizer:
    return Stylizer.load(device="cpu")


def test_stabilized_pan_meets_the_flicker_target(shipped):
    """On a generated pan, with the shipped decoder at the service's precision: warping error at
    least 50 % below per-frame stylization (the target). The style distance (the card's style
    term) measured +17-22 % here, short of the 5 % target (docs/video.md): held to 24 %, so a
    change that blurs more than the bicubic shift does fails (a bilinear warp of the previous
    output in the blend, instead of the nearest pixel, measured +25-27 %)."""
    frames = clips.pan(256, 192, 12)  # 12 frames measure what 24 do (+20.6 % against +21.7 %)
    style = Image.open(PRESETS_DIR / "swamp.jpg").convert("RGB")
    code = shipped.encode_style(style, 256)

    def run(stabilizer: Stabilizer | None) -> list[np.ndarray]:
        render = Frames(shipped, [code], Options(content_size=0), stabilizer)
        return [render(f) for f in frames]

    per_frame, ours = run(None), run(Stabilizer())
    e_per, e_ours = warping_error(frames, per_frame), warping_error(frames, ours)
    s = to_tensor(style.resize((256, round(256 * style.height / style.width))))
    scales = load_style_scales(WEIGHTS_DIR / "heldout_style_scales.safetensors")  # the model card's style term
    with torch.inference_mode():
        d_per, d_ours = (style_distance(shipped.encoder, [shipped.net_input(to_tensor(Image.fromarray(o)))
                                                          for o in outs], shipped.net_input(s), scales)
                         for outs in (per_frame, ours))
    print(f"warping error {e_per:.5f} -> {e_ours:.5f}; style distance {d_per:.4f} -> {d_ours:.4f}")
    assert e_ours <= 0.5 * e_per
    assert d_ours <= 1.24 * d_per
