"""Temporal stability for video: optical flow, warping, occlusion, and the blending that makes
strokes move with the scene instead of flickering in place.

Per-frame AdaIN flickers because the texture the decoder paints does not follow the scene: a
tiny change of the input re-rolls the strokes. ``Stabilizer`` carries the previous stylized frame
along the optical flow (OpenCV's DIS, no weights) and blends it into the new one where the flow is
trusted: pixels that are visible in both frames (forward-backward consistent flow) and look the
same in the input after warping. Occluded, newly revealed or changed pixels take the new frame as
is, and at a scene cut (little of the frame trusted) it starts again, so nothing of the old scene
ghosts into the new one.

``warping_error`` is the measure of flicker (Lai et al., ECCV 2018). It uses Farneback flow, a
different estimator from the one ``Stabilizer`` steers by, so the method is not graded by its own
flow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

cv2.setNumThreads(1)  # the network owns the cores; flow at <= 640 px wide takes a few ms on one
FLOW_WIDTH = 640  # flow is estimated at most this wide and scaled up (strokes are coarser than that)


def gray(frame: np.ndarray) -> np.ndarray:
    """(H, W) uint8 luminance of an (H, W, 3) uint8 RGB frame."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


@lru_cache(maxsize=4)
def _grid(h: int, w: int) -> np.ndarray:
    """(2, H, W) float32 pixel coordinates (y, x): made once per frame size, not per warp."""
    grid = np.mgrid[0:h, 0:w].astype(np.float32)
    grid.flags.writeable = False
    return grid


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """``image`` sampled at x + flow(x): the frame the flow points into, brought to the flow's
    frame (bilinear; outside the image the border is repeated, and masked off by the caller)."""
    ys, xs = _grid(*flow.shape[:2])
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], interpolation,
                     borderMode=cv2.BORDER_REPLICATE)


def consistent(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) bool: where ``forward`` (a -> b) and ``backward`` (b -> a) agree, i.e. the pixel of a
    is visible in b (Sundaram et al. 2010's test, as used for video style transfer by Ruder et al.).
    Pixels whose flow leaves the frame are not."""
    h, w = forward.shape[:2]
    back = warp(backward, forward)
    total = forward + back
    ok = (total ** 2).sum(-1) <= 0.01 * ((forward ** 2).sum(-1) + (back ** 2).sum(-1)) + 0.5
    ys, xs = _grid(h, w)
    tx, ty = xs + forward[..., 0], ys + forward[..., 1]
    return ok & (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)


class Flow:
    """DIS optical flow between grey frames, estimated at most ``width`` px wide and scaled up.
    The MEDIUM preset for the blend: FAST is twice as quick but trusts pixels an object has just
    uncovered, where it then leaves a trail (the ghosting test fails with it; docs/video.md)."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, width: int = FLOW_WIDTH) -> None:
        self.dis = cv2.DISOpticalFlow_create(preset)
        self.width = width

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(H, W, 2) float32 flow from grey frame ``a`` to ``b``: a's pixel x is at x + flow(x) in b."""
        h, w = a.shape
        scale = min(1.0, self.width / w)
        if scale == 1.0:
            return self.dis.calc(a, b, None)
        size = (round(w * scale), round(h * scale))
        small = self.dis.calc(cv2.resize(a, size, interpolation=cv2.INTER_AREA),
                              cv2.resize(b, size, interpolation=cv2.INTER_AREA), None)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) / scale


def shift(image: np.ndarray, offset: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` moved by ``offset`` (x, y) px onto a canvas of ``size`` (w, h): canvas(p + offset)
    = image(p), sub-pixel (bicubic), the image's edge mirrored where it does not reach."""
    m = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])
    return cv2.warpAffine(image, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)


Render = Callable[[np.ndarray], np.ndarray]  # an RGB uint8 frame -> its stylization, same size


@dataclass
class Stabilizer:
    """Per-frame stylization made to move with the scene, in two steps.

    1. **Grid alignment.** The encoder pools by 2 three times, so the strokes the decoder paints
       sit on an 8-px grid of the *image*, not of the scene: in a pan every frame meets the grid at
       a new phase and the texture is re-rolled. The camera's motion (the median optical flow) is
       summed, and each frame is rendered shifted onto a slightly larger canvas so the scene keeps
       one phase against the grid; the shift is undone after. This alone takes most of the
       flicker out of camera motion, without blending anything.
    2. **Flow-guided blending.** On the canvas, where the scene is now in step with the grid, the
       previous output is carried along the flow (nearest pixel: the canvas' motion is whole
       pixels, so nothing is resampled and no blur builds up frame after frame) and blended in
       with weight ``keep`` where it is trusted: visible in both frames (forward-backward
       consistent flow) and alike in the input to ``tolerance`` (0-255) after warping. Occluded,
       revealed or changed pixels take the new frame. Below ``cut`` trusted pixels the frame is a
       new scene: no blending, so nothing of the old scene ghosts into the new one.

    ``keep`` 0 leaves only the alignment."""

    keep: float = 0.6
    tolerance: float = 12.0
    cut: float = 0.5

    def __post_init__(self) -> None:
        self.flow = Flow()
        self.motion_flow = Flow(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, width=320)
        self.cuts = 0
        self.reset()

    def reset(self) -> None:
        """Forget the scene (a new clip, or a cut)."""
        self._frame: np.ndarray | None = None  # previous input, grey
        self._canvas: np.ndarray | None = None  # previous input on its canvas, grey
        self._out: np.ndarray | None = None  # previous output on its canvas, float32 RGB
        self.motion = np.zeros(2, np.float32)  # the camera's path since the scene began, px (x, y)
        self.trusted = 0.0  # share of the last frame that follows from the one before

    def resume(self, motion: tuple[float, float], previous: np.ndarray) -> None:
        """Start as a single pass would be after the grey frame ``previous``, whose path since the
        scene began was ``motion`` (from ``follow``): the next frame keeps that grid phase."""
        self.reset()
        self.motion = np.asarray(motion, np.float32).copy()
        self._frame = previous

    def follow(self, g: np.ndarray) -> None:
        """Step 1 alone for the grey frame ``g``: the camera's path, or a reset at a cut. A video
        segment runs this over the frames before it (no rendering) to start on the grid phase a
        single pass would have there."""
        if self._frame is not None and self._frame.shape != g.shape:
            self.reset()
        if self._frame is not None:
            # A quick coarse flow tells a cut (start afresh: nothing of the old scene may ghost into
            # the new one) from motion (which the canvas follows).
            fwd, back = self.motion_flow(self._frame, g), self.motion_flow(g, self._frame)
            self.trusted = float(self._trust(g, self._frame, back, fwd).mean())
            if self.trusted < self.cut:
                self.cuts += 1
                self.reset()
            else:
                self.motion += np.median(fwd[::4, ::4].reshape(-1, 2), axis=0)  # robust to moving objects
        self._frame = g

    def __call__(self, frame: np.ndarray, render: Render) -> np.ndarray:
        """The output for ``frame`` (H, W, 3 uint8 RGB); ``render`` stylizes one frame."""
        h, w = frame.shape[:2]
        g = gray(frame)
        self.follow(g)
        offset = (-self.motion) % 8
        canvas = shift(frame, offset, (w + 8, h + 8))
        cg, new = gray(canvas), render(canvas).astype(np.float32)
        out = new
        if self._canvas is not None and self.keep > 0:
            back = self.flow(cg, self._canvas)  # this canvas -> the previous one
            trust = self._trust(cg, self._canvas, back, self.flow(self._canvas, cg))
            # a soft edge, so an occlusion boundary does not draw a seam
            weight = cv2.GaussianBlur(trust.astype(np.float32), (5, 5), 0)[..., None] * self.keep
            out = weight * warp(self._out, back, cv2.INTER_NEAREST) + (1 - weight) * new
        self._canvas, self._out = cg, out
        out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        return shift(out, -offset, (w, h))

    def _trust(self, g: np.ndarray, prev: np.ndarray, back: np.ndarray, fwd: np.ndarray) -> np.ndarray:
        """Pixels of ``g`` seen in ``prev`` (consistent flow) and alike there after warping."""
        return consistent(back, fwd) & (np.abs(warp(prev, back).astype(np.float32) - g) <= self.tolerance)


def warping_error(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """Lai et al.'s warping error of stylized ``outputs`` (uint8 RGB) of ``inputs``: for each pair
    of consecutive frames, the flow F from input t to t+1 and its visible pixels M (forward-backward
    consistency), E_t = sum M * ||O_t - warp(O_t+1, F)||^2 / sum M with O in [0, 1] (squared
    distance summed over RGB); the mean over t. Pairs with nothing visible (a cut) are skipped."""
    errors = []
    for a, b, oa, ob in zip(inputs, inputs[1:], outputs, outputs[1:]):
        ga, gb = gray(a), gray(b)
        fwd = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 4, 21, 5, 7, 1.5, 0)
        bwd = cv2.calcOpticalFlowFarneback(gb, ga, None, 0.5, 4, 21, 5, 7, 1.5, 0)
        mask = consistent(fwd, bwd)
        if mask.mean() < 0.05:
            continue
        diff = oa.astype(np.float32) / 255 - warp(ob.astype(np.float32) / 255, fwd)
        errors.append(float(((diff ** 2).sum(-1) * mask).sum() / mask.sum()))
    return float(np.mean(errors)) if errors else 0.0
