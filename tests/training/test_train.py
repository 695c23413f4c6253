"""The training job on tiny generated images: checkpoints, resume, evaluation, bad files, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from helpers import noise_image, without_direction
from waiting import HANG
from model.decoder import load_state, random_decoder, save_decoder
from model.stylizer import Stylizer
from model.vgg import load_encoder
from training import checkpoint
from training.average import main as average_main
from training.data import CropDataset, PreloadedCrops, ResumableSampler, apply_turn, crop_box, turn
from training.export import export
from training.losses import STYLE_LAYERS, objective
from training.train import main as train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    dirs = {k: root / k for k in ("content", "style", "val_content", "val_style")}
    for d in dirs.values():
        (d / "sub").mkdir(parents=True)
    for i in range(3):
        noise_image(72, 64, seed=i).save(dirs["content"] / "sub" / f"c{i}.png")
        noise_image(64, 80, seed=10 + i).save(dirs["style"] / f"s{i}.jpg")
    (dirs["content"] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    for i in range(2):
        noise_image(64, 64, seed=20 + i).save(dirs["val_content"] / f"v{i}.png")
        noise_image(64, 64, seed=30 + i).save(dirs["val_style"] / f"w{i}.png")
    return dirs


def args(folders, out: Path, *extra: str) -> list[str]:
    return ["--content-dir", str(folders["content"]), "--style-dir", str(folders["style"]),
            "--val-content-dir", str(folders["val_content"]), "--val-style-dir", str(folders["val_style"]),
            "--out", str(out), "--batch-size", "2", "--image-size", "48", "--crop-size", "32",
            "--eval-size", "32", "--workers", "0", "--device", "cpu", "--precision", "fp32", *extra]


def test_three_steps_write_checkpoint_eval_grid_and_logs(folders, tmp_path):
    result = train(args(folders, tmp_path, "--max-iter", "3", "--save-every", "2", "--eval-every", "3",
                        "--log-every", "1", "--grid-every", "3"))
    assert result["step"] == 3
    assert result["skipped"] >= 1  # broken.png is met in the first epoch (4 files, 6 samples) and skipped
    ckpt = checkpoint.load(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 3 and set(ckpt) >= {"decoder", "optimizer", "scaler", "rng", "args", "meta"}
    grid = Image.open(tmp_path / "eval_000003.png")
    assert grid.size == (3 * 32, 4 * 32)  # content | style | output, 2x2 held-out pairs
    line = json.loads((tmp_path / "eval.jsonl").read_text().splitlines()[-1])
    assert line["step"] == 3 and line["content"] > 0 and line["style_relu1_1"] > 0
    assert line["grid8"] > 0  # the 8-px grid measure (training/quality.py) rides along
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_resume_continues_exactly_where_it_stopped(folders, tmp_path, capsys):
    """4 steps straight == 2 steps, stop, resume, 2 more: model, Adam state, data order, step."""
    extra = ("--scale-jitter", "0.3", "--mirror-crops")
    straight = tmp_path / "straight"
    train(args(folders, straight, "--max-iter", "4", "--save-every", "100", *extra))
    split = tmp_path / "split"
    train(args(folders, split, "--max-iter", "2", "--save-every", "100", *extra))
    after_two = checkpoint.load(split / "checkpoint.pt")
    capsys.readouterr()
    train(args(folders, split, "--max-iter", "4", "--save-every", "100", "--resume", str(split / "checkpoint.pt"),
               *extra))
    assert f"resumed from {split / 'checkpoint.pt'} at step 2" in capsys.readouterr().out
    a, b = checkpoint.load(straight / "checkpoint.pt"), checkpoint.load(split / "checkpoint.pt")
    assert a["step"] == b["step"] == 4
    # same data order, crops and optimizer trajectory: identical weights and Adam moments
    for k in a["decoder"]:
        torch.testing.assert_close(a["decoder"][k], b["decoder"][k], rtol=1e-5, atol=1e-7)
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"], rtol=1e-4, atol=1e-12)
    assert float(after_two["optimizer"]["state"][0]["step"]) == 2


def test_preloaded_crops_train_exactly_like_the_data_loader(folders, tmp_path):
    train(args(folders, tmp_path / "loader", "--max-iter", "2"))
    train(args(folders, tmp_path / "preload", "--max-iter", "2", "--preload"))
    a = checkpoint.load(tmp_path / "loader" / "checkpoint.pt")["decoder"]
    b = checkpoint.load(tmp_path / "preload" / "checkpoint.pt")["decoder"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-7)


def test_scale_jitter_cuts_larger_crops_the_same_way_in_both_data_paths(folders):
    sides = {crop_box((0, i), 0, 48, 60, 32, jitter=0.5)[2] for i in range(40)}
    assert len(sides) > 5 and min(sides) >= 32 and max(sides) <= 48
    assert {crop_box((0, i), 0, 48, 60, 32)[2] for i in range(40)} == {32}  # no jitter: plain crops
    # the style images (64 x 80) are 48 x 60 at --image-size 48: some of the first three get rescaled
    assert any(crop_box((0, i), 0, 48, 60, 32, jitter=0.5)[2] != 32 for i in range(3))
    dataset = CropDataset(folders["style"], 48, 32, seed=0, scale_jitter=0.5)
    preloaded = PreloadedCrops(dataset, torch.device("cpu"))
    for i in range(3):
        a, b = dataset[(0, i)][0], preloaded.crop((0, i)).float() / 255
        assert a.shape == b.shape == (3, 32, 32)
        assert (a - b).abs().mean() < 0.03  # PIL's and torch's bicubic differ by a little, not a crop


def test_mirror_crops_turn_the_plain_crop_by_its_seeded_symmetry_in_both_data_paths(folders):
    x = torch.arange(2 * 9.0).reshape(2, 3, 3)
    assert len({tuple(apply_turn(x, k).flatten().tolist()) for k in range(8)}) == 8  # 8 distinct symmetries
    torch.testing.assert_close(apply_turn(x, 0), x)
    assert {turn((0, i), 0) for i in range(64)} == set(range(8))  # every one drawn
    # the same turns in any process (DataLoader workers, a resumed run), whatever its hash salt
    probe = "from training.data import turn; print([turn((1, i), 3) for i in range(16)])"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str([turn((1, i), 3) for i in range(16)])
    plain = CropDataset(folders["style"], 48, 32, seed=0, scale_jitter=0.5)
    turned = CropDataset(folders["style"], 48, 32, seed=0, scale_jitter=0.5, mirror=True)
    preloaded = PreloadedCrops(turned, torch.device("cpu"))
    for i in range(3):
        key = (0, i)
        a, b = plain[key][0], turned[key][0]
        torch.testing.assert_close(b, apply_turn(a, turn(key, 0)))  # same box, then turned
        c = preloaded.crop(key).float() / 255
        assert (c - b).abs().mean() < 0.03  # the preloaded path turns it the same way
    assert any(turn((0, i), 0) != 0 for i in range(3))  # so the checks above compared turned crops


def test_grid_weight_adds_a_logged_grid_term_that_changes_training(folders, tmp_path):
    extra = ("--max-iter", "2", "--scale-jitter", "0.3", "--mirror-crops")  # every data option at once
    train(args(folders, tmp_path / "grid", *extra, "--grid-weight", "1"))
    train(args(folders, tmp_path / "plain", *extra))
    ckpt, plain = checkpoint.load(tmp_path / "grid" / "checkpoint.pt"), checkpoint.load(tmp_path / "plain" / "checkpoint.pt")
    assert ckpt["meta"]["losses"]["grid"] > 0 and "grid" not in plain["meta"]["losses"]
    assert ckpt["args"]["grid_weight"] == 1 and ckpt["args"]["scale_jitter"] == 0.3 and ckpt["args"]["mirror_crops"]
    # same data, same seed: only the penalty's gradient can make the weights differ
    assert any(not torch.equal(ckpt["decoder"][k], plain["decoder"][k]) for k in plain["decoder"])


def test_flip_weight_adds_a_logged_flip_term_that_changes_training(folders, tmp_path):
    train(args(folders, tmp_path / "flip", "--max-iter", "2", "--flip-weight", "100"))
    train(args(folders, tmp_path / "plain", "--max-iter", "2"))
    ckpt, plain = checkpoint.load(tmp_path / "flip" / "checkpoint.pt"), checkpoint.load(tmp_path / "plain" / "checkpoint.pt")
    assert ckpt["meta"]["losses"]["flip"] > 0 and "flip" not in plain["meta"]["losses"]
    assert ckpt["args"]["flip_weight"] == 100
    # a negligible weight takes the same path (the decoder on twice the batch): whatever that alone
    # changes is numerics, and the real term must move the weights far more than that
    train(args(folders, tmp_path / "tiny", "--max-iter", "2", "--flip-weight", "1e-12"))
    tiny = checkpoint.load(tmp_path / "tiny" / "checkpoint.pt")

    def moved(run: dict) -> float:
        return max((run["decoder"][k] - plain["decoder"][k]).abs().max().item() for k in plain["decoder"])

    assert moved(ckpt) > 10 * moved(tiny) + 1e-7
    line = json.loads((tmp_path / "flip" / "eval.jsonl").read_text().splitlines()[-1])
    assert line["flipgap"] > 0 and line["flipgap_pipeline"] > 0  # held-out gaps, in 8-bit levels


def test_the_flip_term_sees_the_whole_pipelines_direction():
    torch.manual_seed(0)
    content, style = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    decoder = without_direction(random_decoder(0)).eval()

    def gap(encoder) -> float:
        with torch.no_grad():
            return objective(encoder.eval(), decoder, content, style, flip=True).flip.item()

    # a decoder without a direction still shows VGG's own (the pipeline is what a user turns);
    # with VGG's kernels made directionless too, nothing is left
    pipeline = gap(load_encoder())
    assert pipeline > 0 and gap(without_direction(load_encoder())) < 1e-6 * pipeline


def test_given_style_scales_reach_the_training_run_and_a_resume_keeps_them(folders, tmp_path):
    scales = {name: torch.full((c,), 2.0) for name, c in zip(STYLE_LAYERS, (64, 128, 256, 512))}
    save_file(scales, tmp_path / "scales.safetensors")
    train(args(folders, tmp_path / "run", "--max-iter", "1", "--style-scales", str(tmp_path / "scales.safetensors")))
    ckpt = checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    assert all(torch.equal(s, torch.full_like(s, 2.0)) for s in ckpt["style_scales"])
    result = train(args(folders, tmp_path / "run", "--max-iter", "2", "--resume", str(tmp_path / "run" / "checkpoint.pt")))
    ckpt = checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    assert result["step"] == 2 and all(torch.equal(s, torch.full_like(s, 2.0)) for s in ckpt["style_scales"])


def test_the_sampler_resumes_mid_epoch_and_splits_ranks():
    def keys(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    straight = keys(ResumableSampler(5, seed=3), 12)
    assert sorted(k[1] for k in straight[:5]) == list(range(5)) and {k[0] for k in straight[5:10]} == {1}
    resumed = ResumableSampler(5, seed=3)
    resumed.load_state_dict(resumed.state_dict(7))
    assert keys(resumed, 5) == straight[7:12]
    ranks = [keys(ResumableSampler(6, seed=1, rank=r, world_size=2), 3) for r in (0, 1)]
    assert sorted(k[1] for k in ranks[0] + ranks[1]) == list(range(6))


def test_ema_keeps_the_weight_average_that_evals_and_exports_use(folders, tmp_path):
    train(args(folders, tmp_path / "run", "--max-iter", "1", "--ema-decay", "0.9"))
    ckpt = checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["ema"]["updates"] == 1
    # one update at the warmed-up decay (1 + 1) / (10 + 1), from the starting (seed 0) weights
    start, d = random_decoder(0).state_dict(), 2 / 11
    for k, v in ckpt["decoder"].items():
        torch.testing.assert_close(ckpt["ema"]["decoder"][k], d * start[k] + (1 - d) * v)
    line = json.loads((tmp_path / "run" / "eval.jsonl").read_text().splitlines()[-1])
    assert line["content"] != line["raw_content"] > 0  # the average and the optimizer's weights, both measured
    export(tmp_path / "run" / "checkpoint.pt", tmp_path / "w")
    state, meta = load_state(tmp_path / "w" / "decoder.safetensors")
    assert meta["weights"] == "EMA, decay 0.9, 1 updates"
    assert all(torch.equal(state[k], ckpt["ema"]["decoder"][k]) for k in state)
    assert all(torch.equal(load_state(tmp_path / "run" / "checkpoint.pt")[0][k], state[k]) for k in state)
    export(tmp_path / "run" / "checkpoint.pt", tmp_path / "raw", raw=True)
    raw, meta = load_state(tmp_path / "raw" / "decoder.safetensors")
    assert meta["weights"] == "the optimizer's" and all(torch.equal(raw[k], ckpt["decoder"][k]) for k in raw)
    # without the warm-up a warm start keeps decay^n of its starting weights
    train(args(folders, tmp_path / "cold", "--max-iter", "1", "--ema-decay", "0.9", "--no-ema-warmup"))
    ckpt = checkpoint.load(tmp_path / "cold" / "checkpoint.pt")
    for k, v in ckpt["decoder"].items():
        torch.testing.assert_close(ckpt["ema"]["decoder"][k], 0.9 * start[k] + 0.1 * v)
    export(tmp_path / "cold" / "checkpoint.pt", tmp_path / "wc")
    assert load_state(tmp_path / "wc" / "decoder.safetensors")[1]["weights"] == \
        "EMA, decay 0.9 from the starting weights, 1 updates"


def test_ema_resumes_exactly(folders, tmp_path, capsys):
    train(args(folders, tmp_path / "straight", "--max-iter", "3", "--ema-decay", "0.9"))
    split = tmp_path / "split"
    train(args(folders, split, "--max-iter", "2", "--ema-decay", "0.9"))
    train(args(folders, split, "--max-iter", "3", "--ema-decay", "0.9", "--resume", str(split / "checkpoint.pt")))
    a, b = checkpoint.load(tmp_path / "straight" / "checkpoint.pt")["ema"], checkpoint.load(split / "checkpoint.pt")["ema"]
    assert a["updates"] == b["updates"] == 3
    for k in a["decoder"]:
        torch.testing.assert_close(a["decoder"][k], b["decoder"][k], rtol=1e-5, atol=1e-7)
    capsys.readouterr()
    train(args(folders, split, "--max-iter", "4", "--resume", str(split / "checkpoint.pt")))
    assert "without --ema-decay this run drops it" in capsys.readouterr().out
    assert checkpoint.load(split / "checkpoint.pt")["ema"] is None


def test_averaging_decoders_weighs_their_parameters(tmp_path, capsys):
    paths = []
    for seed, step in ((1, "100"), (2, "130")):
        paths.append(save_decoder(random_decoder(seed), tmp_path / str(seed), "safetensors", {"step": step}))
    average_main([str(p) for p in paths] + ["--weights", "3,1", "--out", str(tmp_path / "avg")])
    assert "wrote" in capsys.readouterr().out
    state, meta = load_state(tmp_path / "avg" / "decoder.safetensors")
    a, b = random_decoder(1).state_dict(), random_decoder(2).state_dict()
    for k in a:
        torch.testing.assert_close(state[k], 0.75 * a[k] + 0.25 * b[k])
    assert meta["step"] == "130" and [x["weight"] for x in json.loads(meta["averaged"])] == [0.75, 0.25]
    assert (tmp_path / "avg" / "SHA256SUMS").read_text().endswith("  decoder.safetensors\n")
    for bad, message in (("1", "one non-negative weight per decoder"), ("1,x", "expected comma-separated numbers")):
        with pytest.raises(SystemExit) as exit_:
            average_main([str(p) for p in paths] + ["--weights", bad, "--out", str(tmp_path / "bad")])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_time_limit_stops_and_saves(folders, tmp_path, capsys):
    result = train(args(folders, tmp_path, "--max-iter", "100000", "--time-limit", "0.5"))
    assert 0 < result["step"] < 100000
    assert checkpoint.load(tmp_path / "checkpoint.pt")["step"] == result["step"]
    assert "stopped by --time-limit" in capsys.readouterr().out


def test_death_mid_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_atomic({"step": 1, "w": torch.ones(3)}, path)

    def dies_halfway(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt  # the process is killed while writing

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_atomic({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert checkpoint.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_export_makes_a_loadable_decoder_with_metadata(folders, tmp_path):
    train(args(folders, tmp_path / "run", "--max-iter", "1"))
    written = export(tmp_path / "run" / "checkpoint.pt", tmp_path / "w")
    assert {p.name for p in written} == {"decoder.safetensors", "decoder.pth"}
    state, meta = load_state(tmp_path / "w" / "decoder.safetensors")
    assert meta["step"] == "1" and "content" in json.loads(meta["losses"])
    assert (tmp_path / "w" / "SHA256SUMS").read_text().endswith("  decoder.safetensors\n")
    out = Stylizer.load(tmp_path / "w" / "decoder.safetensors", device="cpu").stylize(
        noise_image(40, 40), [noise_image(32, 32, 1)], content_size=0, style_size=0)
    assert out.size == (40, 40)


def test_init_records_the_steps_already_trained(folders, tmp_path):
    train(args(folders, tmp_path / "a", "--max-iter", "2"))
    export(tmp_path / "a" / "checkpoint.pt", tmp_path / "wa")
    train(args(folders, tmp_path / "b", "--max-iter", "1", "--init", str(tmp_path / "wa" / "decoder.safetensors")))
    export(tmp_path / "b" / "checkpoint.pt", tmp_path / "wb")
    assert load_state(tmp_path / "wb" / "decoder.safetensors")[1]["step"] == "3"


def test_torchrun_two_cpu_processes(folders, tmp_path):
    env = {**os.environ, "ADAIN_NO_JEMALLOC": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "training.train", *args(folders, tmp_path, "--max-iter", "2")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    ckpt = checkpoint.load(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 2 and ckpt["meta"]["world_size"] == 2


def test_a_two_step_run_is_published_with_the_gates_numbers_and_the_default_stays(folders, tmp_path):
    from service.decoders import SHIPPED, ModelStore
    from training.publish import main as publish

    train(args(folders, tmp_path / "run", "--max-iter", "2", "--save-every", "100"))
    models = tmp_path / "models"
    assert publish([str(tmp_path / "run"), "--name", "trial", "--models-dir", str(models), "--n", "2", "--size", "32",
                    "--val-content-dir", str(folders["val_content"]), "--val-style-dir", str(folders["val_style"])]) == 0
    store = ModelStore(models, REPO / "weights" / "decoder.safetensors")
    gate = store.card("trial")["gate"]
    assert gate["pairs"] == 4 and gate["against"] == SHIPPED and set(gate["distances"]) == {"trial", SHIPPED}
    assert all(d["content"] > 0 and d["style"] > 0 for d in gate["distances"].values())
    assert store.names() == [SHIPPED, "trial"] and store.rollout().default == SHIPPED  # publishing is not rolling out
