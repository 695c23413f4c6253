"""ONNX export of the two networks, and ONNX Runtime as a backend for the Stylizer.

Two graphs, both with dynamic batch, height and width (opset ``OPSET``, torch.onnx's exporter):
``encoder.onnx`` (RGB in [0, 1], (N, 3, H, W) -> relu4_1, (N, 512, ceil(H/8), ceil(W/8))) and
``decoder.onnx`` (relu4_1 -> RGB). AdaIN, style codes, masks, tiling and the colour step stay in
the runtime code (model/adain.py): they are a few element-wise operations on channel statistics,
shared with the PyTorch backend so the style math lives in one place, while the graphs hold all of
the convolutions. A user of another runtime reproduces AdaIN in four lines (docs/onnx.md).

int8: both graphs statically quantized by ONNX Runtime (QDQ, weights int8 per channel, activations
uint8 per tensor), calibrated on a fixed set: the scikit-image photos and textures of
model/calibration.py through the encoder, and each of them restyled with the preset styles
(AdaIN targets) through the decoder.

The backend keeps the graphs in a folder keyed by the weights they came from (``graphs``), so
``ADAIN_BACKEND=onnxruntime`` exports them on first start and reuses them after.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from model.atomic import write_atomic

OPSET = 18
PRECISIONS = ("fp32", "int8")
FILES = {"fp32": ("encoder.onnx", "decoder.onnx"), "int8": ("encoder.int8.onnx", "decoder.int8.onnx")}
MANIFEST = "manifest.json"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "adain-service" / "onnx"


def export(net: nn.Module, example: torch.Tensor, path: Path, names: tuple[str, str]) -> Path:
    """One network as an ONNX graph (fp32, dynamic N/H/W, weights inside the file)."""
    dim = torch.export.Dim
    # batch 2 in the examples: the exporter would fix a dimension traced at size 1; sides >= 2
    # because reflection padding needs them
    shapes = ({0: dim("n"), 2: dim("h", min=2), 3: dim("w", min=2)},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(net.float().eval(), (example,), input_names=[names[0]], output_names=[names[1]],
                                    dynamic_shapes=shapes, opset_version=OPSET, dynamo=True, verbose=False)
    write_atomic(path, lambda tmp: program.save(str(tmp), external_data=False))
    return path


def quantize(folder: Path, styles: Sequence[torch.Tensor]) -> tuple[Path, Path]:
    """encoder.int8.onnx and decoder.int8.onnx from the fp32 graphs in ``folder``, calibrated on
    model/calibration.py's images (encoder) and on them restyled with ``styles`` (decoder), all as
    256² centre crops. Ranges: the 99.999th percentile of each tensor's histogram (min-max let the
    rare peaks of VGG's activations spend the 256 levels: 2-4 dB worse)."""
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from model.adain import adain, mean_std
    from model.calibration import CALIBRATION_SIZE, calibration_images

    def crop(x: torch.Tensor, side: int = CALIBRATION_SIZE) -> torch.Tensor:  # histograms need one shape
        top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
        return x[..., top:top + side, left:left + side].contiguous()

    images = [crop(x) for x in calibration_images()]
    styles = [crop(s) for s in styles]
    fp32 = [folder / f for f in FILES["fp32"]]
    encoder = ort.InferenceSession(str(fp32[0]), providers=["CPUExecutionProvider"])
    features = [encoder.run(None, {"image": x.numpy()})[0] for x in images]
    codes = [mean_std(torch.from_numpy(encoder.run(None, {"image": s.numpy()})[0])) for s in styles]
    # each image restyled with one of the styles in turn: histogram calibration is slow in the number of inputs
    targets = [adain(torch.from_numpy(f), *codes[i % len(codes)]).numpy() for i, f in enumerate(features)]

    class Reader(CalibrationDataReader):
        def __init__(self, name: str, batches: list) -> None:
            self.items: Iterator = iter([{name: b} for b in batches])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    inputs = [("image", [x.numpy() for x in images + styles]), ("features", targets)]
    out = []
    for src, dst, (name, batches) in zip(fp32, (folder / f for f in FILES["int8"]), inputs):
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its progress
                write_atomic(dst, lambda t: quantize_static(
                    str(prepared), str(t), Reader(name, batches), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.Percentile, extra_options={"CalibPercentile": 99.999}))
        out.append(dst)
    return out[0], out[1]


def _digest(path: Path | None) -> str | None:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


def graphs(decoder_path: Path, scales_path: Path | None, vgg_path: Path | None, precision: str,
           folder: Path = CACHE) -> tuple[Path, Path]:
    """The (encoder, decoder) graphs for these weights in this precision, made in ``folder`` unless
    its manifest says each came from the same weight files: a new decoder re-exports only the
    decoder; int8 graphs, calibrated through both networks, follow either."""
    from model.decoder import load_decoder
    from model.paths import PRESETS_DIR, VGG_SCALES
    from model.vgg import load_encoder

    if precision not in PRECISIONS:
        raise ValueError(f"the onnxruntime backend runs {', '.join(PRECISIONS)}; got {precision!r}")
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401  (torch.onnx's exporter)
    except ImportError as e:
        raise ImportError(f"the onnxruntime backend needs the onnx extra: pip install 'adain-service[onnx]' ({e})") from e
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    enc_key = {"opset": OPSET, "vgg": _digest(vgg_path), "scales": _digest(None if vgg_path else scales_path or VGG_SCALES)}
    dec_key = {"opset": OPSET, "decoder": _digest(decoder_path)}
    keys = dict(zip(FILES["fp32"], (enc_key, dec_key)))
    keys.update(dict.fromkeys(FILES["int8"], {"encoder": enc_key, "decoder": dec_key}))
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}

    def stale(name: str) -> bool:
        return manifest.get(name) != keys[name] or not (folder / name).exists()

    enc_file, dec_file = FILES["fp32"]
    if stale(enc_file):
        export(load_encoder(scales_path, vgg_path), torch.rand(2, 3, 64, 96), folder / enc_file, ("image", "features"))
        manifest[enc_file] = keys[enc_file]
    if stale(dec_file):
        export(load_decoder(decoder_path), torch.rand(2, 512, 8, 12), folder / dec_file, ("features", "image"))
        manifest[dec_file] = keys[dec_file]
    if precision == "int8" and any(stale(name) for name in FILES["int8"]):
        from model.images import open_image, resize_shorter, to_tensor

        styles = [to_tensor(resize_shorter(open_image(p), 256)) for p in sorted(PRESETS_DIR.glob("*.jpg"))]
        quantize(folder, styles)
        manifest.update({name: keys[name] for name in FILES["int8"]})
    write_atomic(folder / MANIFEST, lambda t: t.write_text(json.dumps(manifest, indent=1)))
    return folder / FILES[precision][0], folder / FILES[precision][1]


def providers() -> list[str]:
    """CUDA's execution provider when this onnxruntime build has one, then the CPU's."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OrtNetwork(nn.Module):
    """An ONNX Runtime session behind the call the Stylizer makes of a network: a float32 (N, C, H, W)
    tensor in, one out. No parameters, so the Stylizer's ``.to`` / ``.eval`` leave it as it is."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=providers())
        self.input = self.session.get_inputs()[0].name
        self.path = Path(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input: array})[0])
