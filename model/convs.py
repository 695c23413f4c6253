"""3x3 convolutions the faster of two ways on this machine, for fp32 inference on a CPU.

Where a CPU has no native bf16 the networks run in fp32, and PyTorch's direct convolution
(oneDNN, channels_last) sits on the same floor as every other runtime. Winograd convolution does
fewer multiplications for a 3x3 kernel; the torch wheel ships one, NNPACK
(``torch._nnpack_spatial_convolution``, NCHW, errors ~1e-5 relative). Which is faster depends on
the CPU, the layer's channels and the image size, so it is measured, not assumed: the first time a
layer sees an input of a new size bucket (its area rounded to a power of two), both ways run on
that very input (timed, each including any layout change it needs) and the faster one is kept for
that layer and bucket. ``Stylizer.warmup`` fills the common buckets at load.

Only in inference (``torch.is_grad_enabled()`` false): training keeps PyTorch's own convolution."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterable

import torch
from torch import nn

MODES = ("auto", "direct", "winograd")
# NNPACK's Winograd holds the input and output transformed (8x8 tiles per 6x6 of output, fp32):
# ~(in + out channels) x pixels x 7 bytes. A 64-channel layer at a 1152² tile wants 1.2 GB, where
# direct convolution needs none: above this, direct (memory is what tiles bound)
WINOGRAD_MAX_BYTES = 192 * 2**20


def winograd_available() -> bool:
    # the call also initialises NNPACK: without it every convolution fails ("NNPACK
    # SpatialConvolution_updateOutput failed")
    return bool(torch._nnpack_available())


def bucket(x: torch.Tensor) -> int:
    """An input's size bucket: log2 of its area, rounded (64² -> 12, 1152² -> 20)."""
    return round(math.log2(max(1, x.shape[-1] * x.shape[-2])))


class FastConv2d(nn.Conv2d):
    """An unpadded 3x3 Conv2d (the networks pad by reflection first) that runs by direct
    convolution or by Winograd, per input size bucket: measured (``mode`` auto) or fixed. Its
    parameters are the Conv2d's, so state dicts are unchanged."""

    def setup(self, mode: str) -> FastConv2d:
        self.mode = mode
        self.paths: dict[int, str] = {}  # bucket -> "direct" | "winograd"
        self._lock = threading.Lock()
        # NNPACK takes NCHW weights and the networks are channels_last: converted once here, not on
        # every call (inference only: the weights no longer change)
        self.weight_nchw = self.weight.detach().contiguous()
        return self

    def workspace(self, x: torch.Tensor) -> int:
        """Bytes NNPACK's Winograd transforms take for this input (about)."""
        h, w = x.shape[-2] - 2, x.shape[-1] - 2
        return 4 * 64 * (self.in_channels + self.out_channels) * -(-h // 6) * -(-w // 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu" or self.mode == "direct" \
                or self.workspace(x) > WINOGRAD_MAX_BYTES:
            return self._direct(x)
        if self.mode == "winograd":
            return self._winograd(x)
        key = bucket(x)
        path = self.paths.get(key)
        if path is None:
            with self._lock:  # two threads seeing a new size at once measure it once
                path = self.paths.get(key) or self._measure(x, key)
        return self._winograd(x) if path == "winograd" else self._direct(x)

    def _direct(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)

    def _winograd(self, x: torch.Tensor) -> torch.Tensor:
        return torch._nnpack_spatial_convolution(x.contiguous(), self.weight_nchw, self.bias, [0, 0], [1, 1])

    def _measure(self, x: torch.Tensor, key: int) -> str:
        # one timed run each: a first request of a new size costs about three convolutions per
        # layer once (the allocator keeps its memory, so a first run is not much slower)
        times = {}
        for name, run in (("direct", self._direct), ("winograd", self._winograd)):
            start = time.perf_counter()
            run(x)
            times[name] = time.perf_counter() - start
        path = min(times, key=times.get)
        self.paths[key] = path
        return path


def install(net: nn.Module, mode: str) -> int:
    """Turn every unpadded 3x3 Conv2d of ``net`` into a FastConv2d (in place: same parameters);
    how many. ``mode`` auto measures, direct or winograd fixes the way (direct where this torch
    has no NNPACK)."""
    if mode not in MODES:
        raise ValueError(f"convolution mode must be one of {', '.join(MODES)}; got {mode!r}")
    if not winograd_available():
        mode = "direct"
    n = 0
    for m in net.modules():
        if type(m) is nn.Conv2d and m.kernel_size == (3, 3) and m.padding == (0, 0) and m.stride == (1, 1) \
                and m.dilation == (1, 1) and m.groups == 1:
            m.__class__ = FastConv2d
            m.setup(mode)
            n += 1
    return n


def summary(nets: Iterable[nn.Module]) -> dict[str, int]:
    """How many (layer, size bucket) pairs run by each way so far: {"direct": n, "winograd": m}."""
    counts: Counter[str] = Counter()
    for net in nets:
        for m in net.modules():
            if isinstance(m, FastConv2d):
                counts.update(m.paths.values())
    return dict(sorted(counts.items()))
