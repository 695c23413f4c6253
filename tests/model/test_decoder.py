"""Decoder: reference layout, safetensors / official .pth loading, export round trips."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from model.cli import main as cli_main
from model.decoder import Decoder, load_decoder, load_state, random_decoder, save_decoder


def plain_reference_decoder() -> nn.Sequential:
    """Written out as in the reference port's net.py, independently of model/decoder.py."""
    return nn.Sequential(
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(512, 256, (3, 3)), nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(256, 128, (3, 3)), nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(128, 128, (3, 3)), nn.ReLU(),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(128, 64, (3, 3)), nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(64, 64, (3, 3)), nn.ReLU(),
        nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(64, 3, (3, 3)),
    )


def test_layout_matches_reference_keys():
    assert Decoder().state_dict().keys() == plain_reference_decoder().state_dict().keys()
    x = torch.rand(1, 512, 5, 7)
    assert Decoder()(x).shape == (1, 3, 40, 56)


def test_random_decoder_is_deterministic():
    a, b = random_decoder(3).state_dict(), random_decoder(3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["1.weight"], random_decoder(4).state_dict()["1.weight"])


def test_cli_export_reference_loads_into_plain_sequential(tmp_path, decoder_path):
    """Export our decoder with the CLI; the .pth loads into a plain reference Sequential (strictly,
    with weights_only=True) and computes the same image as our module."""
    assert cli_main(["export", "--format", "reference", "--out", str(tmp_path), "--checkpoint", str(decoder_path)]) == 0
    plain = plain_reference_decoder()
    plain.load_state_dict(torch.load(tmp_path / "decoder.pth", weights_only=True))
    ours = load_decoder(decoder_path)
    x = torch.rand(1, 512, 6, 5, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(plain(x), ours(x), rtol=0, atol=0)
    # the exported encoder is a full 53-module reference vgg_normalised.pth
    vgg_state = torch.load(tmp_path / "vgg_normalised.pth", weights_only=True)
    assert "0.weight" in vgg_state and "51.weight" in vgg_state and len(vgg_state) == 34


def test_safetensors_round_trip_keeps_metadata(tmp_path, decoder_path):
    assert cli_main(["export", "--format", "safetensors", "--out", str(tmp_path), "--checkpoint", str(decoder_path)]) == 0
    a, b = load_state(decoder_path)[0], load_state(tmp_path / "decoder.safetensors")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    save_decoder(load_decoder(decoder_path), tmp_path / "m", "safetensors", {"step": "1234"})
    assert load_state(tmp_path / "m" / "decoder.safetensors")[1] == {"step": "1234"}


def test_official_decoder_pth_and_training_checkpoint_load(tmp_path):
    dec = random_decoder(7)
    torch.save(dec.state_dict(), tmp_path / "decoder.pth")
    torch.save({"decoder": dec.state_dict(), "step": 10}, tmp_path / "ckpt.pt")
    for path in (tmp_path / "decoder.pth", tmp_path / "ckpt.pt"):
        loaded = load_decoder(path).state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in dec.state_dict().items())


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_in_a_pth_is_refused(tmp_path):
    path = tmp_path / "decoder.pth"
    with open(path, "wb") as f:
        torch.save({"1.weight": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError):
        load_decoder(path)


def test_missing_decoder_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="ADAIN_DECODER"):
        load_decoder(tmp_path / "nope.safetensors")
