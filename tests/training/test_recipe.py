"""training.recipe: phases run in order, each warm-started from the one before, resumable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import noise_image
from model.decoder import load_state
from training import checkpoint
from training.recipe import load_recipe, main as recipe_main

RECIPE = """
[common]
content-dir = "{data}/content"
style-dir = "{data}/style"
image-size = 48
crop-size = 32
batch-size = 2
workers = 0
device = "cpu"
precision = "fp32"
no-tensorboard = true
style-norm-images = 4

[[phase]]
name = "a-reconstruct"
flags = { recon-steps = 2, max-iter = 2 }

[[phase]]
name = "b-style"
note = "the paper's loss, averaged weights"
flags = { max-iter = 3, lr = 5e-5, ema-decay = 0.9, ema-warmup = false, seed = 7 }
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for role, seed in (("content", 0), ("style", 10)):
        (root / role).mkdir()
        (root / "val" / role).mkdir(parents=True)
        for i in range(3):
            noise_image(64, 56, seed=seed + i).save(root / role / f"{role}{i}.png")
        noise_image(64, 56, seed=seed + 5).save(root / "val" / role / f"held-{role}.png")
    return root


def test_a_two_phase_recipe_runs_end_to_end_and_resumes(data, tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    out = tmp_path / "runs"
    recipe_main([str(recipe), "--data", str(data), "--out", str(out), "--dry-run"])
    printed = capsys.readouterr().out
    assert "phase 1/2 a-reconstruct" in printed and "phase 2/2 b-style: the paper's loss" in printed
    assert f"--init {out / 'a-reconstruct' / 'export' / 'decoder.safetensors'}" in printed
    assert "--no-ema-warmup" in printed and f"--content-dir {data}/content" in printed
    assert not out.exists()  # a dry run runs nothing

    monkeypatch.setenv("ADAIN_MODELS_DIR", str(tmp_path / "models"))  # --publish: into this model store
    recipe_main([str(recipe), "--data", str(data), "--out", str(out), "--publish", "tiny"])
    card = json.loads((tmp_path / "models" / "tiny" / "card.json").read_text())
    assert set(card["gate"]["distances"]) == {"tiny", "v7"} and card["gate"]["pairs"] == 1
    first, second = (checkpoint.load(out / p / "checkpoint.pt") for p in ("a-reconstruct", "b-style"))
    assert first["step"] == 2 and first["args"]["recon_steps"] == 2
    assert second["step"] == 3 and second["args"]["init"].endswith("a-reconstruct/export/decoder.safetensors")
    assert second["args"]["seed"] == 7 and second["args"]["ema_warmup"] is False
    state, meta = load_state(out / "b-style" / "export" / "decoder.safetensors")
    assert meta["step"] == "5" and meta["weights"].startswith("EMA, decay 0.9")  # 2 + 3 steps in all
    assert "recipe done" in capsys.readouterr().out

    # again: nothing is retrained; an interrupted phase (a checkpoint, no export) resumes, not restarts
    (out / "b-style" / "export" / "decoder.safetensors").unlink()
    recipe_main([str(recipe), "--data", str(data), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "a-reconstruct - done" in printed and f"--resume {out / 'b-style' / 'checkpoint.pt'}" in printed
    assert load_state(out / "b-style" / "export" / "decoder.safetensors")[1]["step"] == "5"


def test_bad_recipes_are_refused_with_a_message(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[common]\nseed = 1\n")
    with pytest.raises(ValueError, match="no \\[\\[phase\\]\\]"):
        load_recipe(bad)
    bad.write_text('[[phase]]\nname = "x"\n[[phase]]\nname = "x"\n')
    with pytest.raises(ValueError, match="unique"):
        load_recipe(bad)
    r = subprocess.run([sys.executable, "-m", "training.recipe", str(bad), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unique" in r.stderr


def test_the_shipped_recipe_adds_up_to_the_shipped_decoder():
    """v7.toml's phases and steps are the ones weights/decoder.safetensors records."""
    from model.paths import DECODER, REPO_ROOT

    phases = load_recipe(REPO_ROOT / "training" / "recipes" / "v7.toml")
    assert len(phases) == 7 and phases[0].init == "none" and all(p.init == "previous" for p in phases[1:])
    assert sum(int(p.flags["max-iter"]) for p in phases) == int(load_state(DECODER)[1]["step"]) == 43260
