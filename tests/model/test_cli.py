"""The ``adain`` console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers import noise_image
from model.cli import main as cli_main

ADAIN = Path(sys.executable).with_name("adain")


def test_console_script_writes_a_png(tmp_path, decoder_path):
    noise_image(75, 50, seed=1).save(tmp_path / "content.jpg")
    noise_image(64, 64, seed=2).save(tmp_path / "a.png")
    noise_image(64, 64, seed=3).save(tmp_path / "b.png")
    out = tmp_path / "out" / "result.png"
    r = subprocess.run([str(ADAIN), "stylize", str(tmp_path / "content.jpg"), str(tmp_path / "a.png"),
                        str(tmp_path / "b.png"), "-o", str(out), "--weights", "1,3", "--alpha", "0.7",
                        "--content-size", "0", "--style-size", "32", "--precision", "fp32", "--device", "cpu",
                        "--decoder", str(decoder_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(out).size == (75, 50)
    assert "75x50" in r.stdout


def test_directory_mode_writes_every_pair(tmp_path, decoder_path):
    (tmp_path / "c" / "nested").mkdir(parents=True)
    (tmp_path / "s").mkdir()
    noise_image(40, 40, 1).save(tmp_path / "c" / "one.png")
    noise_image(48, 40, 2).save(tmp_path / "c" / "nested" / "two.jpg")
    for i in range(3):
        noise_image(32, 32, 10 + i).save(tmp_path / "s" / f"style{i}.png")
    (tmp_path / "s" / "notes.txt").write_text("not an image")
    rc = cli_main(["stylize", "--content-dir", str(tmp_path / "c"), "--style-dir", str(tmp_path / "s"),
                   "--out-dir", str(tmp_path / "o"), "--content-size", "0", "--style-size", "0",
                   "--device", "cpu", "--decoder", str(decoder_path)])
    assert rc == 0
    outs = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert len(outs) == 6 and "two_stylized_style2.png" in outs
    assert Image.open(tmp_path / "o" / "two_stylized_style0.png").size == (48, 40)


def test_bad_options_exit_with_a_message(tmp_path, decoder_path, capsys):
    noise_image(40, 40).save(tmp_path / "c.png")
    with pytest.raises(SystemExit, match="alpha"):
        cli_main(["stylize", str(tmp_path / "c.png"), str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png"),
                  "--alpha", "2", "--device", "cpu", "--decoder", str(decoder_path)])
    with pytest.raises(SystemExit, match="decoder weights not found"):
        cli_main(["stylize", str(tmp_path / "c.png"), str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png"),
                  "--decoder", str(tmp_path / "missing.safetensors")])
