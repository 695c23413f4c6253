"""The ONNX export and the onnxruntime backend: the graphs match PyTorch, take any size, are kept
and reused by the weights they came from; int8 runs and its distance from fp32 is what the docs say."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import psnr
from model import ort
from model.cli import main as cli
from model.decoder import random_decoder, save_decoder
from model.paths import DECODER, PRESETS_DIR
from model.stylizer import Stylizer

pytest.importorskip("onnxruntime")
CONTENT, STYLE = PRESETS_DIR / "swamp.jpg", PRESETS_DIR / "battlefield.jpg"


@pytest.fixture(scope="module")
def torch_fp32() -> Stylizer:
    return Stylizer.load(device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def onnx_fp32(onnx_dir: Path) -> Stylizer:
    return Stylizer.load(backend="onnxruntime", onnx_dir=onnx_dir)


def test_export_writes_two_graphs_with_dynamic_sides(onnx_dir: Path):
    import onnx

    names = sorted(p.name for p in onnx_dir.iterdir())
    assert names == ["decoder.onnx", "encoder.onnx", "manifest.json"]
    for name, inp, out in [("encoder", "image", "features"), ("decoder", "features", "image")]:
        graph = onnx.load(str(onnx_dir / f"{name}.onnx"))
        onnx.checker.check_model(graph)
        assert graph.opset_import[0].version == ort.OPSET
        dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
        assert graph.graph.input[0].name == inp and graph.graph.output[0].name == out
        assert isinstance(dims[0], str) and dims[1] == (3 if name == "encoder" else 512)
        assert isinstance(dims[2], str) and isinstance(dims[3], str), dims  # N, H, W all dynamic


@pytest.mark.parametrize("size", [(256, 256), (512, 512), (328, 200), (83, 61)])
def test_onnxruntime_fp32_matches_pytorch_fp32(onnx_fp32: Stylizer, torch_fp32: Stylizer, size):
    content = Image.open(CONTENT).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    ours = onnx_fp32.stylize(content, [STYLE], content_size=0, style_size=256)
    ref = torch_fp32.stylize(content, [STYLE], content_size=0, style_size=256)
    assert ours.size == size
    assert psnr(ours, ref) >= 45


def test_networks_match_on_their_own(onnx_fp32: Stylizer, torch_fp32: Stylizer):
    x = torch.rand(2, 3, 72, 104)
    with torch.inference_mode():
        feat = torch_fp32.encoder(x)
        torch.testing.assert_close(onnx_fp32.encoder(x), feat, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(onnx_fp32.decoder(feat), torch_fp32.decoder(feat), rtol=1e-4, atol=1e-4)


def test_graphs_are_reused_and_a_new_decoder_redoes_only_its_graph(onnx_dir: Path, tmp_path: Path):
    stamp = (onnx_dir / "encoder.onnx").stat().st_mtime_ns
    assert ort.graphs(DECODER, None, None, "fp32", onnx_dir)[0].stat().st_mtime_ns == stamp  # reused
    folder = tmp_path / "cache"
    folder.mkdir()
    for name in ("encoder.onnx", "decoder.onnx", "manifest.json"):
        (folder / name).write_bytes((onnx_dir / name).read_bytes())
    encoder_bytes = (folder / "encoder.onnx").read_bytes()
    other = save_decoder(random_decoder(seed=3), tmp_path, "safetensors")
    enc, dec = ort.graphs(other, None, None, "fp32", folder)
    assert enc.read_bytes() == encoder_bytes  # the same encoder weights: kept
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["decoder.onnx"] != json.loads((onnx_dir / "manifest.json").read_text())["decoder.onnx"]
    st = Stylizer(ort.OrtNetwork(enc), ort.OrtNetwork(dec), "cpu", "fp32")
    ref = Stylizer.load(other, device="cpu", precision="fp32")
    img = Image.open(CONTENT).convert("RGB").resize((96, 64))
    assert psnr(st.stylize(img, [img], content_size=0), ref.stylize(img, [img], content_size=0)) >= 45
    assert oct(dec.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # readable by others, as files are


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_int8_needs_onnxruntime_and_unknown_backends_are_refused():
    with pytest.raises(ValueError, match="onnxruntime backend"):
        Stylizer.load(device="cpu", precision="int8")
    with pytest.raises(ValueError, match="backend must be"):
        Stylizer.load(backend="tensorflow")
    with pytest.raises(ValueError, match="fp32, int8"):
        ort.graphs(DECODER, None, None, "bf16", Path("/nonexistent"))


def test_int8_graphs_render_close_to_fp32(onnx_dir: Path, onnx_fp32: Stylizer, tmp_path: Path):
    for name in ("encoder.onnx", "decoder.onnx", "manifest.json"):  # the shared folder stays fp32 only
        (tmp_path / name).write_bytes((onnx_dir / name).read_bytes())
    int8 = Stylizer.load(backend="onnxruntime", precision="int8", onnx_dir=tmp_path)
    assert int8.precision == "int8" and int8.backend == "onnxruntime"
    assert (tmp_path / "encoder.int8.onnx").stat().st_size < (tmp_path / "encoder.onnx").stat().st_size / 3
    out = int8.stylize(CONTENT, [STYLE], content_size=256, style_size=256)
    ref = onnx_fp32.stylize(CONTENT, [STYLE], content_size=256, style_size=256)
    assert out.size == ref.size
    # the measured distance (docs/onnx.md): far from lossless, far from noise
    assert 20 <= psnr(out, ref) < 45


def test_cli_export_and_stylize_with_onnxruntime(onnx_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "graphs"
    out.mkdir()
    # the encoder as the fixture exported it (the same weights: kept); the decoder is made here
    (out / "encoder.onnx").write_bytes((onnx_dir / "encoder.onnx").read_bytes())
    manifest = json.loads((onnx_dir / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({"encoder.onnx": manifest["encoder.onnx"]}))
    assert cli(["export", "--format", "onnx", "--out", str(out)]) == 0
    assert "decoder.onnx" in capsys.readouterr().out
    assert (out / "decoder.onnx").read_bytes() == (onnx_dir / "decoder.onnx").read_bytes()  # deterministic
    result = tmp_path / "out.png"
    assert cli(["stylize", str(CONTENT), str(STYLE), "-o", str(result), "--backend", "onnxruntime",
                "--onnx-dir", str(out), "--content-size", "128"]) == 0
    assert Image.open(result).size[1] == 128
