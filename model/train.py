"""Train the AdaIN decoder (the encoder is the fixed, normalised VGG-19).

    python -m model.train --content-dir data/content --style-dir data/style --out runs/r1
    torchrun --nproc-per-node 4 -m model.train ...        # several GPUs (DDP; rank 0 logs and saves)

Defaults are the paper's / reference code's: Adam lr 1e-4 with decay 5e-5 (lr / (1 + decay*step)),
batch 8, style weight 10, content weight 1, images resized (shorter side) to 512 then randomly
cropped to 256. Precision auto: CUDA bf16 (fp16 + grad scaler where bf16 is missing), CPU bf16
autocast where native, else fp32. On the CPU the process re-executes itself under jemalloc told to
keep its memory when it can (2-4x faster on these VMs; ADAIN_NO_JEMALLOC=1 turns that off).

Outputs in --out: checkpoint.pt (atomic, every --save-every steps and on SIGINT/SIGTERM),
eval.jsonl + eval_XXXXXX.png (held-out losses and a content|style|output grid every --eval-every
steps), TensorBoard logs in tb/ (scalars and image grids). `python -m model.export` turns the
checkpoint into weights/decoder.safetensors.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from model.adain import adain, match_colors, mean_std, rgb_stats
from model.average import EMA
from model.checkpoint import load as load_checkpoint
from model.checkpoint import save_atomic
from model.cli import comma_floats
from model.data import CropDataset, PreloadedCrops, ResumableSampler, collate, list_images, recolor, repeat_counts
from model.decoder import load_state, random_decoder
from model.images import InvalidImage, open_image, resize_shorter, to_image, to_tensor
from model.losses import STYLE_LAYERS, channel_scales, content_loss, load_style_scales, style_losses
from model.quality import flip_gap, grid_penalty, grid_ratio, luma_power, mirrored
from model.runtime import cpu_has_native_bf16, reexec_with_jemalloc, resolve_device
from model.vgg import Encoder, load_encoder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--content-dir", type=Path, required=True, help="content images (searched recursively)")
    p.add_argument("--style-dir", type=Path, required=True, help="style images (searched recursively)")
    p.add_argument("--val-content-dir", type=Path, help="held-out content images for evaluation")
    p.add_argument("--val-style-dir", type=Path, help="held-out style images for evaluation")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoint, logs, grids")
    p.add_argument("--max-iter", type=int, default=160_000, help="total steps (the paper: 160k)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-decay", type=float, default=5e-5, help="lr = lr / (1 + lr_decay * step)")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear lr warm-up from 0 (0 = none, as the paper)")
    p.add_argument("--recon-steps", type=int, default=0,
                   help="first train the decoder to reconstruct images from their own relu4_1 features for "
                        "this many steps (no style loss), then AdaIN training (0 = none, as the paper)")
    p.add_argument("--recon-pixel-weight", type=float, default=100.0, help="pixel MSE weight during --recon-steps")
    p.add_argument("--style-weight", type=float, default=10.0)
    p.add_argument("--style-layer-weights", type=layer_weights, default=[1.0] * len(STYLE_LAYERS),
                   metavar="W1,W2,W3,W4",
                   help="weigh each style layer's term (relu1_1,relu2_1,relu3_1,relu4_1) in the training loss; "
                        "1,1,1,1 = the paper; e.g. 3,2,1,1 leans on the colour and fine-texture layers. "
                        "Logged and held-out style losses stay the plain sum, so runs compare")
    p.add_argument("--style-norm", choices=["corpus", "none"], default="corpus",
                   help="corpus: weigh each style-loss channel by 1 / its mean activation over --style-norm-images "
                        "training images (see model/losses.py; needed with our VGG); none: the paper's formula as is")
    p.add_argument("--style-norm-images", type=int, default=128, help="images (half content, half style) for it")
    p.add_argument("--style-scales", type=Path,
                   help="take the corpus scales from this file (a checkpoint or .safetensors, e.g. "
                        "weights/heldout_style_scales.safetensors) instead of computing them from this corpus")
    p.add_argument("--style-repeat", type=repeat_rule, action="append", default=[], metavar="GLOB=K",
                   help="style images whose file name matches GLOB are drawn K times per epoch (repeatable; "
                        "the last match wins), e.g. 'gcompris-qt-data_*=8' to oversample a few paintings")
    p.add_argument("--style-recolor", type=fraction, default=0.0, metavar="FRACTION",
                   help="give this fraction of style crops a random hue and a chroma gain up to "
                        "--style-chroma-gain (model/data.py recolor): palettes the style set lacks; 0 = none, as "
                        "the paper (session 17: 0.5 cut the Van Goghs' colour term 11 %% but not the visible cast)")
    p.add_argument("--style-chroma-gain", type=gain, default=1.5, help="largest chroma gain of --style-recolor")
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--grid-weight", type=float, default=0.0,
                   help="weight of a penalty on the outputs' 8-px grid (model/quality.py grid_penalty); "
                        "0 = none, as the paper")
    p.add_argument("--flip-weight", type=float, default=0.0,
                   help="weight of a mirror-consistency term (model/quality.py flip_gap; the decoder runs on "
                        "twice the batch): against drips and strokes that point one way whatever the image; "
                        "0 = none, as the paper")
    p.add_argument("--flip-space", choices=["features", "pipeline"], default="features",
                   help="what --flip-weight mirrors: features = the AdaIN target (the decoder alone; session 6, "
                        "which asks of the decoder a symmetry VGG's features do not have); pipeline = the "
                        "content and style images, encoded and AdaIN-ed again (what a user sees)")
    p.add_argument("--scale-jitter", type=float, default=0.0,
                   help="cut crops up to (1 + this) x --crop-size and scale them down to it (0 = none, as the "
                        "paper): moves small style images' 8x8 JPEG blocks off the decoder's 8-px lattice")
    p.add_argument("--mirror-crops", action="store_true",
                   help="turn each content and style crop by a random one of the square's 8 symmetries (not in "
                        "the paper; tried for v3: neither which way the drips point nor the held-out loss changed "
                        "against a control, see weights/TRAINING_LOG.md)")
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="also keep an exponential moving average of the decoder's weights (model/average.py; "
                        "e.g. 0.999 = about the last 1,000 steps); held-out evals and exports then use the "
                        "average, with the optimizer's own weights' evals as raw_*; 0 = none, as the paper")
    p.add_argument("--ema-warmup", action=argparse.BooleanOptionalAction, default=True,
                   help="let the average forget the starting weights fast (decay (1 + n) / (10 + n) until it "
                        "reaches --ema-decay); --no-ema-warmup keeps a warm start's trained weights in it")
    p.add_argument("--image-size", type=int, default=512, help="shorter side before cropping")
    p.add_argument("--crop-size", type=int, default=256)
    p.add_argument("--save-every", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--log-every", type=int, default=50, help="TensorBoard scalars")
    p.add_argument("--grid-every", type=int, default=1000, help="TensorBoard training image grids")
    p.add_argument("--eval-contents", type=int, default=4, help="held-out contents used (x styles = pairs)")
    p.add_argument("--eval-styles", type=int, default=4, help="held-out styles used")
    p.add_argument("--eval-size", type=int, default=256, help="held-out images: shorter side, centre crop")
    p.add_argument("--resume", type=Path, help="checkpoint to continue (model, optimizer, scaler, step, RNG, data)")
    p.add_argument("--init", type=Path, help="decoder weights to start from (e.g. weights/decoder.safetensors)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per loader")
    p.add_argument("--preload", action="store_true",
                   help="decode every image once and keep it on the device (small corpora, fast GPUs)")
    p.add_argument("--time-limit", type=float, default=0, help="stop (and save) after this many seconds; 0 = none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-tensorboard", action="store_true")
    return p.parse_args(argv)


def layer_weights(text: str) -> list[float]:
    weights = comma_floats(text)
    if len(weights) != len(STYLE_LAYERS) or not all(0 <= w < float("inf") for w in weights) or not sum(weights) > 0:
        raise argparse.ArgumentTypeError(f"expected {len(STYLE_LAYERS)} comma-separated weights >= 0, "
                                         f"not all 0 ({','.join(STYLE_LAYERS)}), got {text!r}")
    return weights


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text!r}")
    return value


def gain(text: str) -> float:
    value = float(text)
    if not 1 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a gain >= 1, got {text!r}")
    return value


def repeat_rule(text: str) -> tuple[str, int]:
    pattern, sep, count = text.rpartition("=")
    if not sep or not pattern or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"expected GLOB=K with K >= 1, got {text!r}")
    return pattern, int(count)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None = fp32. Auto: bf16 on GPUs that have it (no scaler needed), fp16 on older GPUs, bf16 on
    CPUs with native bf16."""
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def setup_distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def batches(folder: Path, args: argparse.Namespace, seed: int, rank: int, world: int, step: int,
            device: torch.device, repeat: list[tuple[str, int]] | None = None):
    """Endless (images, skipped) batches, starting where ``step`` steps left off."""
    dataset = CropDataset(folder, args.image_size, args.crop_size, seed=seed, scale_jitter=args.scale_jitter,
                          mirror=args.mirror_crops)
    counts = repeat_counts(dataset.files, repeat or [])
    sampler = ResumableSampler(len(dataset), seed=seed, rank=rank, world_size=world, repeats=counts)
    if repeat and rank == 0:
        print(f"{folder}: {sum(k > 1 for k in counts)} images repeated, {sampler.n} draws per epoch", flush=True)
    sampler.load_state_dict(sampler.state_dict(step * args.batch_size))
    if args.preload:
        pre = PreloadedCrops(dataset, device)
        if pre.skipped:
            print(f"{folder}: {pre.skipped} unreadable files skipped", flush=True)
        return len(dataset), pre.batches(sampler, args.batch_size)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=args.workers, persistent_workers=args.workers > 0, drop_last=True)
    return len(dataset), iter(loader)


def eval_images(folder: Path, n: int, size: int) -> torch.Tensor:
    """The first ``n`` readable images of a folder (by name), resized and centre-cropped to size x size."""
    out = []
    for path in list_images(folder):
        if len(out) == n:
            break
        try:
            img = resize_shorter(open_image(path), size)
        except InvalidImage:
            continue  # the loaders skip such files too
        left, top = (img.width - size) // 2, (img.height - size) // 2
        out.append(to_tensor(img.crop((left, top, left + size, top + size)))[0])
    if not out:
        raise ValueError(f"no readable images in {folder}")
    return torch.stack(out)


@torch.no_grad()
def mirrored_target(encoder: Encoder, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The AdaIN target of the content and style images mirrored (model/quality.py ``mirrored``):
    what the pipeline decodes for a user who turns the photo and the style."""
    m_mean, m_std = mean_std(encoder(mirrored(style)))
    return adain(encoder(mirrored(content)), m_mean, m_std)


def losses(encoder: Encoder, decoder: torch.nn.Module, content: torch.Tensor, style: torch.Tensor,
           scales: list[torch.Tensor] | None = None, flip: bool = False, flip_space: str = "features"):
    """(output images, content loss, [style loss per layer], flip gap or None) for a batch of pairs.
    ``flip``: also decode a mirrored target, in the same pass (one forward, as DDP wants), for
    model/quality.py's ``flip_gap``: with ``flip_space`` "features" the target mirrored, with
    "pipeline" the target of the mirrored content and style images (VGG is not mirror-symmetric,
    so the two differ; only the second is what a user who turns a photo sees)."""
    style_feats = encoder.features(style)
    content_feat = encoder(content)
    s_mean, s_std = mean_std(style_feats[-1])
    target = adain(content_feat, s_mean, s_std).detach()
    gap = None
    if flip:
        other_target = mirrored_target(encoder, content, style) if flip_space == "pipeline" else mirrored(target)
        output, other = decoder(torch.cat([target, other_target])).chunk(2)
        gap = flip_gap(output, other)
    else:
        output = decoder(target)
    out_feats = encoder.features(output)
    return output, content_loss(out_feats[-1], target), style_losses(out_feats, style_feats, scales), gap


def reconstruction_loss(encoder: Encoder, decoder: torch.nn.Module, content: torch.Tensor,
                        pixel_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Warm-up objective: decode an image's own relu4_1 features back to the image (pixels and
    relu4_1), which teaches the decoder colours and structure before any style is asked of it."""
    feat = encoder(content).detach()
    output = decoder(feat)
    return output, content_loss(encoder(output), feat) + pixel_weight * F.mse_loss(output.float(), content)


@torch.no_grad()
def evaluate(encoder, decoder, contents, styles, device, amp, scales=None,
             color_match: float = 0.0) -> tuple[dict, torch.Tensor]:
    """Mean held-out losses over every content x style pair, the outputs' ``grid8``, ``flipgap``
    and ``flipgap_pipeline`` (see model/quality.py and ``losses``), and a grid of up to 8 pairs.
    With ``scales`` the style terms are the normalised ones training used (see model/losses.py).
    ``color_match``: measure the product's output, the decoder's with the colour step after it
    (model/adain.py ``match_colors``; the flip gaps stay the decoder's own)."""
    pairs = [(c, s) for c in range(len(contents)) for s in range(len(styles))]
    lc, ls, rows, power, lf, lp = 0.0, torch.zeros(4), [], 0.0, 0.0, 0.0
    for i in range(0, len(pairs), 8):
        chunk = pairs[i:i + 8]
        c = contents[[p[0] for p in chunk]].to(device).contiguous(memory_format=torch.channels_last)
        s = styles[[p[1] for p in chunk]].to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out, c_loss, s_losses, gap = losses(encoder, decoder, c, s, scales, flip=True)
            pipeline_gap = flip_gap(out, decoder(mirrored_target(encoder, c, s)))
            if color_match:
                out = torch.stack([match_colors(o.float().clamp(0, 1), *rgb_stats(si), color_match)
                                   for o, si in zip(out, s)])
                style_feats, out_feats = encoder.features(s), encoder.features(out.to(c.dtype))
                s_mean, s_std = mean_std(style_feats[-1])
                c_loss = content_loss(out_feats[-1], adain(encoder(c), s_mean, s_std))
                s_losses = style_losses(out_feats, style_feats, scales)
        lc += c_loss.item() * len(chunk)
        lf += gap.item() * len(chunk)
        lp += pipeline_gap.item() * len(chunk)
        ls += torch.stack([x.float() for x in s_losses]).cpu() * len(chunk)
        power = power + luma_power(out.float().clamp(0, 1)).cpu()
        if not rows:
            rows = [torch.cat([c[j], s[j], out[j].float().clamp(0, 1)], dim=2).cpu() for j in range(len(chunk))]
    n = len(pairs)
    result = {"content": lc / n, "style": float(ls.sum()) / n,
              **{f"style_{name}": float(v) / n for name, v in zip(STYLE_LAYERS, ls)},
              # root mean squares, in 8-bit levels
              "flipgap": 255 * (lf / n) ** 0.5, "flipgap_pipeline": 255 * (lp / n) ** 0.5}
    if all(d % 8 == 0 for d in power.shape):  # the decoder's 8-px grid, see model/quality.py
        result["grid8"] = grid_ratio(power)
    return result, torch.cat(rows, dim=1)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    rank, world, local_rank = setup_distributed()
    device = resolve_device(args.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    amp = autocast_dtype(args.precision, device)
    torch.manual_seed(args.seed + rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    main_proc = rank == 0
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "checkpoint.pt"

    encoder = load_encoder().to(device, memory_format=torch.channels_last)
    decoder = random_decoder(args.seed)
    ckpt, step, init_meta = None, 0, {}
    if args.resume:
        ckpt = load_checkpoint(args.resume)
        # the data order is (epoch, position) over the repeated draws: other repeats would silently
        # resume somewhere else in another order
        trained = [tuple(r) for r in ckpt.get("args", {}).get("style_repeat", [])]
        if trained != list(args.style_repeat):
            raise SystemExit(f"{args.resume} was trained with --style-repeat {trained or 'none'}; resume with the "
                             f"same rules, or start a new run from its weights with --init")
        decoder.load_state_dict(ckpt["decoder"])
        step, init_meta = ckpt["step"], ckpt.get("meta", {})
    elif args.init:
        state, init_meta = load_state(args.init)
        decoder.load_state_dict(state)
        if main_proc:
            print(f"initialised decoder from {args.init} (trained {init_meta.get('step', '?')} steps before)", flush=True)
    # steps the starting decoder had already been trained (so exports record the total)
    init_step = int(init_meta.get("step", 0)) if args.init else int(init_meta.get("init_step", 0))
    # on the device (and in its memory format) before the optimizer sees the parameters
    decoder.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(decoder.parameters(), lr=args.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        if main_proc:
            print(f"resumed from {args.resume} at step {step}", flush=True)
    ema = None
    if args.ema_decay:
        ema = EMA(decoder, args.ema_decay, args.ema_warmup)
        if ckpt is not None and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
    elif ckpt is not None and ckpt.get("ema") and main_proc:
        print(f"{args.resume} kept a weight average; without --ema-decay this run drops it and exports "
              f"the optimizer's weights", flush=True)
    model = DistributedDataParallel(decoder) if world > 1 else decoder

    n_content, content_iter = batches(args.content_dir, args, args.seed, rank, world, step, device)
    n_style, style_iter = batches(args.style_dir, args, args.seed + 1, rank, world, step, device,
                                  args.style_repeat)
    scales = None
    if args.style_norm == "corpus":
        if ckpt is not None and ckpt.get("style_scales") is not None:
            scales = ckpt["style_scales"]  # a resumed run keeps the loss it started with
        elif args.style_scales:
            scales = load_style_scales(args.style_scales)
        else:
            half = max(1, args.style_norm_images // 2)
            sample = torch.cat([eval_images(args.content_dir, half, args.crop_size),
                                eval_images(args.style_dir, half, args.crop_size)])
            scales = channel_scales(encoder, sample.to(device).contiguous(memory_format=torch.channels_last))
    val = None
    if args.val_content_dir and args.val_style_dir and main_proc:
        val = (eval_images(args.val_content_dir, args.eval_contents, args.eval_size),
               eval_images(args.val_style_dir, args.eval_styles, args.eval_size))
    writer = None
    if main_proc and not args.no_tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(args.out / "tb"))
        except ImportError:
            print("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)", flush=True)
    if main_proc:
        print(f"training on {device} ({amp or 'fp32'}), {n_content} content / {n_style} style images, "
              f"batch {args.batch_size}x{world}, crops {args.crop_size} from {args.image_size}, "
              f"step {step} -> {args.max_iter}", flush=True)

    stop = {"signal": None}

    def request_stop(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)

    def save(last_losses: dict) -> None:
        if not main_proc:
            return
        save_atomic({
            "decoder": decoder.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "step": step, "style_scales": scales, "ema": ema.state_dict() if ema else None,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []},
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "meta": {"losses": last_losses, "content_dir": str(args.content_dir), "style_dir": str(args.style_dir),
                     "content_images": n_content, "style_images": n_style, "world_size": world,
                     "init": str(args.init or init_meta.get("init", "")), "init_step": init_step,
                     "wall_s": round(time.time() - t_start, 1)},
        }, ckpt_path)

    def run_eval() -> None:
        decoder.eval()
        result, grid = evaluate(encoder, ema.module if ema else decoder, *val, device, amp, scales)
        if ema:  # the average is what export ships; the optimizer's weights ride along as raw_*
            result.update({f"raw_{k}": v for k, v in evaluate(encoder, decoder, *val, device, amp, scales)[0].items()})
        decoder.train()
        result.update(step=step, wall_s=round(time.time() - t_start, 1))
        with open(args.out / "eval.jsonl", "a") as f:
            f.write(json.dumps(result) + "\n")
        to_image(grid).save(args.out / f"eval_{step:06d}.png")
        if writer:
            for k_, v in result.items():
                if k_ not in ("step", "wall_s"):
                    writer.add_scalar(f"eval/{k_}", v, step)
            writer.add_image("eval/content_style_output", grid, step)
        raw = f" (raw {result['raw_content']:.3f} / {result['raw_style']:.3f})" if ema else ""
        bar.write(f"step {step}: held-out content {result['content']:.3f} style {result['style']:.3f}{raw}")

    from tqdm import tqdm

    def read_losses() -> dict:
        out = {"content": lc.item(), "style": sum(x.item() for x in ls)}
        if args.grid_weight and step > args.recon_steps:
            out["grid"] = lg.item()
        if args.flip_weight and step > args.recon_steps:
            out["flip"] = lf.item()
        return out

    bar = tqdm(total=args.max_iter, initial=step, disable=not main_proc, dynamic_ncols=True, unit="step")
    skipped, last, t_start = 0, {}, time.time()
    while step < args.max_iter and stop["signal"] is None:
        if args.time_limit and time.time() - t_start > args.time_limit:
            stop["signal"] = f"--time-limit {args.time_limit:g}s"
            break
        lr = args.lr / (1.0 + args.lr_decay * step)
        if args.warmup_steps:
            lr *= min(1.0, (step + 1) / args.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        (content, sc), (style, ss) = next(content_iter), next(style_iter)
        skipped += sc + ss
        if args.style_recolor:  # seeded by the step, so a resumed run recolours the same crops
            style = recolor(style, args.style_recolor, args.style_chroma_gain,
                            torch.Generator().manual_seed(args.seed * 1_000_003 + step))
        content = content.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        style = style.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            if step < args.recon_steps:
                output, lc = reconstruction_loss(encoder, model, content, args.recon_pixel_weight)
                ls, loss = [torch.zeros((), device=device)] * 4, lc
            else:
                output, lc, ls, lf = losses(encoder, model, content, style, scales, flip=args.flip_weight > 0,
                                            flip_space=args.flip_space)
                loss = args.content_weight * lc + args.style_weight * sum(
                    w * x for w, x in zip(args.style_layer_weights, ls))
                if lf is not None:
                    loss = loss + args.flip_weight * lf
                if args.grid_weight:
                    lg = grid_penalty(output.float().clamp(0, 1))
                    loss = loss + args.grid_weight * lg
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if ema:
            ema.update(decoder)
        step += 1

        if main_proc:
            bar.update(1)
            # .item() waits for the GPU: read losses only when something uses them
            if step % 10 == 0 or step % args.log_every == 0 or step % args.save_every == 0 or step == args.max_iter:
                last = read_losses()
                bar.set_postfix(**{k: f"{v:.3f}" for k, v in last.items()}, lr=f"{lr:.2e}", skipped=skipped)
            if writer and step % args.log_every == 0:
                writer.add_scalar("loss/content", last["content"], step)
                writer.add_scalar("loss/style", last["style"], step)
                for extra in ("grid", "flip"):
                    if extra in last:
                        writer.add_scalar(f"loss/{extra}", last[extra], step)
                for name, x in zip(STYLE_LAYERS, ls):
                    writer.add_scalar(f"loss/style_{name}", x.item(), step)
                writer.add_scalar("lr", lr, step)
                writer.add_scalar("data/skipped_files", skipped, step)
            if writer and step % args.grid_every == 0:
                k = min(4, content.shape[0])
                grid = torch.cat([content[:k], style[:k], output[:k].float().clamp(0, 1)], dim=3)
                writer.add_images("train/content_style_output", grid.float().cpu(), step)
            if val is not None and step % args.eval_every == 0:
                run_eval()
        if step % args.save_every == 0:
            save(last)
        if step == args.recon_steps and main_proc:
            save(last)  # keep the end of the warm-up: a decoder that reconstructs, before any style
            (args.out / "checkpoint.pt").replace(args.out / "checkpoint_recon.pt")
            save(last)
    if main_proc and "lc" in locals():
        last = read_losses()
    if val is not None and step % args.eval_every != 0:
        run_eval()  # the final weights always get a held-out number
    save(last)
    bar.close()
    if main_proc:
        why = f"stopped by {stop['signal']}" if stop["signal"] else "finished"
        print(f"{why} at step {step}; checkpoint {ckpt_path}; {skipped} unreadable files skipped", flush=True)
    if writer:
        writer.close()
    if world > 1:
        dist.destroy_process_group()
    return {"step": step, "skipped": skipped, "losses": last}


if __name__ == "__main__":
    reexec_with_jemalloc(["-m", "model.train", *sys.argv[1:]])
    main()
