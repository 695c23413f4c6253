"""Train the AdaIN decoder (the encoder is the fixed, normalised VGG-19).

    python -m training.train --content-dir data/content --style-dir data/style --out runs/r1
    torchrun --nproc-per-node 4 -m training.train ...     # several GPUs (DDP; rank 0 logs and saves)

Defaults are the paper's / reference code's: Adam lr 1e-4 with decay 5e-5 (lr / (1 + decay*step)),
batch 8, style weight 10, content weight 1, images resized (shorter side) to 512 then randomly
cropped to 256. Precision auto: CUDA bf16 (fp16 + grad scaler where bf16 is missing), CPU bf16
autocast where native, else fp32. On the CPU the process re-executes itself under jemalloc told to
keep its memory when it can (2-4x faster on these VMs; ADAIN_NO_JEMALLOC=1 turns that off).

Outputs in --out: checkpoint.pt (atomic, every --save-every steps and on SIGINT/SIGTERM),
eval.jsonl + eval_XXXXXX.png (held-out losses and a content|style|output grid every --eval-every
steps), TensorBoard logs in tb/. `python -m training.export` turns the checkpoint into a
decoder.safetensors; `python -m training.recipe` runs the shipped decoder's phases in order.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from model.decoder import load_state, random_decoder
from model.images import to_image
from model.runtime import autocast_dtype, reexec_with_jemalloc, resolve_device
from model.vgg import load_encoder
from training.average import EMA
from training.checkpoint import load as load_checkpoint
from training.checkpoint import save_atomic
from training.data import CropDataset, PreloadedCrops, ResumableSampler, collate
from training.evaluate import eval_images, evaluate
from training.losses import STYLE_LAYERS, channel_scales, load_style_scales, objective, reconstruction
from training.quality import grid_penalty


def _data_args(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("data")
    data.add_argument("--content-dir", type=Path, required=True, help="content images (searched recursively)")
    data.add_argument("--style-dir", type=Path, required=True, help="style images (searched recursively)")
    data.add_argument("--val-content-dir", type=Path, help="held-out content images for evaluation")
    data.add_argument("--val-style-dir", type=Path, help="held-out style images for evaluation")
    data.add_argument("--image-size", type=int, default=512, help="shorter side before cropping")
    data.add_argument("--crop-size", type=int, default=256)
    data.add_argument("--scale-jitter", type=float, default=0.0,
                      help="cut crops up to (1 + this) x --crop-size and scale them down to it (0 = none, as the "
                           "paper): moves small style images' 8x8 JPEG blocks off the decoder's 8-px lattice")
    data.add_argument("--mirror-crops", action="store_true",
                      help="turn each content and style crop by a random one of the square's 8 symmetries")
    data.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per loader")
    data.add_argument("--preload", action="store_true",
                      help="decode every image once and keep it on the device (small corpora, fast GPUs)")


def _optimisation_args(p: argparse.ArgumentParser) -> None:
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--max-iter", type=int, default=160_000, help="total steps (the paper: 160k)")
    opt.add_argument("--batch-size", type=int, default=8)
    opt.add_argument("--lr", type=float, default=1e-4)
    opt.add_argument("--lr-decay", type=float, default=5e-5, help="lr = lr / (1 + lr_decay * step)")
    opt.add_argument("--warmup-steps", type=int, default=0, help="linear lr warm-up from 0 (0 = none, as the paper)")
    opt.add_argument("--ema-decay", type=float, default=0.0,
                     help="also keep an exponential moving average of the weights (training/average.py; 0.999 = "
                          "about the last 1,000 steps); evals and exports then use it, the optimizer's weights' "
                          "evals are logged as raw_*; 0 = none, as the paper")
    opt.add_argument("--ema-warmup", action=argparse.BooleanOptionalAction, default=True,
                     help="let the average forget the starting weights fast (decay (1 + n) / (10 + n) until it "
                          "reaches --ema-decay); --no-ema-warmup keeps a warm start's trained weights in it")


def _loss_args(p: argparse.ArgumentParser) -> None:
    loss = p.add_argument_group("loss")
    loss.add_argument("--content-weight", type=float, default=1.0)
    loss.add_argument("--style-weight", type=float, default=10.0)
    loss.add_argument("--style-norm", choices=["corpus", "none"], default="corpus",
                      help="corpus: weigh each style-loss channel by 1 / its mean activation over "
                           "--style-norm-images training images (training/losses.py); none: the paper's formula")
    loss.add_argument("--style-norm-images", type=int, default=128, help="images (half content, half style) for it")
    loss.add_argument("--style-scales", type=Path,
                      help="take the corpus scales from this file (a checkpoint or .safetensors, e.g. "
                           "weights/heldout_style_scales.safetensors) instead of computing them")
    loss.add_argument("--recon-steps", type=int, default=0,
                      help="first train the decoder to reconstruct images from their own relu4_1 features for "
                           "this many steps (no style loss), then AdaIN training (0 = none, as the paper)")
    loss.add_argument("--recon-pixel-weight", type=float, default=100.0, help="pixel MSE weight during --recon-steps")
    loss.add_argument("--grid-weight", type=float, default=0.0,
                      help="weight of a penalty on the outputs' 8-px grid (training/quality.py grid_penalty)")
    loss.add_argument("--flip-weight", type=float, default=0.0,
                      help="weight of a mirror-consistency term on the whole pipeline (training/quality.py "
                           "flip_gap; the decoder runs on twice the batch), against strokes that point one way")


def _run_args(p: argparse.ArgumentParser) -> None:
    run = p.add_argument_group("run")
    run.add_argument("--out", type=Path, required=True, help="run folder: checkpoint, logs, grids")
    run.add_argument("--resume", type=Path, help="checkpoint to continue (model, optimizer, scaler, step, RNG, data)")
    run.add_argument("--init", type=Path, help="decoder weights to start from (e.g. weights/decoder.safetensors)")
    run.add_argument("--save-every", type=int, default=1000)
    run.add_argument("--eval-every", type=int, default=1000)
    run.add_argument("--log-every", type=int, default=50, help="TensorBoard scalars")
    run.add_argument("--grid-every", type=int, default=1000, help="TensorBoard training image grids")
    run.add_argument("--eval-contents", type=int, default=4, help="held-out contents used (x styles = pairs)")
    run.add_argument("--eval-styles", type=int, default=4, help="held-out styles used")
    run.add_argument("--eval-size", type=int, default=256, help="held-out images: shorter side, centre crop")
    run.add_argument("--device", default="auto")
    run.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    run.add_argument("--time-limit", type=float, default=0, help="stop (and save) after this many seconds; 0 = none")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--no-tensorboard", action="store_true")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for group in (_data_args, _optimisation_args, _loss_args, _run_args):
        group(p)
    return p.parse_args(argv)


def setup_distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initialises the process group under torchrun."""
    if (world := int(os.environ.get("WORLD_SIZE", "1"))) == 1:
        return 0, 1, 0
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def batches(folder: Path, args: argparse.Namespace, seed: int, rank: int, world: int, step: int,
            device: torch.device):
    """(number of images, endless (images, skipped) batches starting where ``step`` steps left off)."""
    dataset = CropDataset(folder, args.image_size, args.crop_size, seed=seed, scale_jitter=args.scale_jitter,
                          mirror=args.mirror_crops)
    sampler = ResumableSampler(len(dataset), seed=seed, rank=rank, world_size=world)
    sampler.load_state_dict(sampler.state_dict(step * args.batch_size))
    if args.preload:
        pre = PreloadedCrops(dataset, device)
        if pre.skipped:
            print(f"{folder}: {pre.skipped} unreadable files skipped", flush=True)
        return len(dataset), pre.batches(sampler, args.batch_size)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=args.workers, persistent_workers=args.workers > 0, drop_last=True)
    return len(dataset), iter(loader)


def style_scales(args: argparse.Namespace, encoder: torch.nn.Module, ckpt: dict | None,
                 device: torch.device) -> list[torch.Tensor] | None:
    """The style loss's channel scales: a resumed run's own, a given file's, or this corpus's."""
    if args.style_norm == "none":
        return None
    if ckpt is not None and ckpt.get("style_scales") is not None:
        return ckpt["style_scales"]  # a resumed run keeps the loss it started with
    if args.style_scales:
        return load_style_scales(args.style_scales)
    half = max(1, args.style_norm_images // 2)
    sample = torch.cat([eval_images(args.content_dir, half, args.crop_size),
                        eval_images(args.style_dir, half, args.crop_size)])
    return channel_scales(encoder, sample.to(device).contiguous(memory_format=torch.channels_last))


def get_lr(args: argparse.Namespace, step: int) -> float:
    """The paper's decay (lr / (1 + decay * step)), after an optional linear warm-up."""
    warmup = min(1.0, (step + 1) / args.warmup_steps) if args.warmup_steps else 1.0
    return args.lr / (1.0 + args.lr_decay * step) * warmup


@dataclass
class Trainer:
    """What a training step works on: the run's settings, the networks, the optimizer, the step."""

    args: argparse.Namespace
    device: torch.device
    amp: torch.dtype | None  # autocast precision; None = fp32
    rank: int
    world: int
    encoder: nn.Module
    decoder: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: EMA | None
    step: int = 0
    init_step: int = 0  # steps the starting decoder was trained before this run (exports record the total)
    init_meta: dict = field(default_factory=dict)
    scales: list[torch.Tensor] | None = None
    model: nn.Module | None = None  # the decoder as trained: wrapped in DDP when there are several processes
    started: float = field(default_factory=time.time)

    @property
    def main_proc(self) -> bool:
        return self.rank == 0


@dataclass
class Data:
    """Endless batches of content and style crops, and the count of unreadable files skipped."""

    n_content: int
    n_style: int
    content: Iterator
    style: Iterator
    skipped: int = 0

    def next(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        (content, sc), (style, ss) = next(self.content), next(self.style)
        self.skipped += sc + ss
        return (content.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last),
                style.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last))


@dataclass
class Logs:
    """Where a run reports: the progress bar, TensorBoard, the held-out set and its evaluations."""

    out: Path
    bar: object
    writer: object | None
    val: tuple[torch.Tensor, torch.Tensor] | None
    last: dict[str, float] = field(default_factory=dict)  # the latest loss terms, as numbers


def train_step(t: Trainer, content: torch.Tensor, style: torch.Tensor) -> dict:
    """One optimizer step on a batch; returns its loss terms (tensors, still on the device)."""
    args = t.args
    with torch.autocast(content.device.type, dtype=t.amp or torch.float32, enabled=t.amp is not None):
        if t.step < args.recon_steps:
            output, lc = reconstruction(t.encoder, t.model, content, args.recon_pixel_weight)
            terms, loss = {"content": lc, "style": torch.zeros(4, device=lc.device)}, lc
        else:
            o = objective(t.encoder, t.model, content, style, t.scales, flip=args.flip_weight > 0)
            output, terms = o.output, {"content": o.content, "style": torch.stack(o.style)}
            loss = args.content_weight * o.content + args.style_weight * sum(o.style)
            if o.flip is not None:
                terms["flip"] = o.flip
                loss = loss + args.flip_weight * o.flip
            if args.grid_weight:
                terms["grid"] = grid_penalty(output.float().clamp(0, 1))
                loss = loss + args.grid_weight * terms["grid"]
    t.optimizer.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()
    t.scaler.step(t.optimizer)
    t.scaler.update()
    if t.ema:
        t.ema.update(t.decoder)
    return {**terms, "output": output.detach()}


def as_numbers(terms: dict) -> dict[str, float]:
    """Loss terms as logged (.item() waits for the GPU: called only when something uses them)."""
    out = {"content": terms["content"].item(), "style": terms["style"].sum().item()}
    return out | {k: terms[k].item() for k in ("grid", "flip") if k in terms}


def build(args: argparse.Namespace, rank: int, world: int, device: torch.device, amp: torch.dtype | None,
          log: Callable[..., None]) -> tuple[Trainer, dict | None]:
    """The networks, optimizer and weight average: fresh, warm-started (--init) or resumed; and the
    checkpoint resumed from (None for a new run)."""
    encoder = load_encoder().to(device, memory_format=torch.channels_last)
    decoder = random_decoder(args.seed)
    ckpt, step, init_meta = None, 0, {}
    if args.resume:
        ckpt = load_checkpoint(args.resume)
        decoder.load_state_dict(ckpt["decoder"])
        step, init_meta = ckpt["step"], ckpt.get("meta", {})
    elif args.init:
        state, init_meta = load_state(args.init)
        decoder.load_state_dict(state)
        log(f"initialised decoder from {args.init} (trained {init_meta.get('step', '?')} steps before)", flush=True)
    init_step = int(init_meta.get("step", 0)) if args.init else int(init_meta.get("init_step", 0))
    decoder.to(device, memory_format=torch.channels_last).train()  # before the optimizer sees the parameters
    t = Trainer(args, device, amp, rank, world, encoder, decoder, torch.optim.Adam(decoder.parameters(), lr=args.lr),
                torch.amp.GradScaler(device.type, enabled=amp == torch.float16),
                EMA(decoder, args.ema_decay, args.ema_warmup) if args.ema_decay else None,
                step=step, init_step=init_step, init_meta=init_meta)
    if ckpt is not None:
        restore(t, ckpt, log)
    t.model = DistributedDataParallel(decoder) if world > 1 else decoder
    return t, ckpt


def restore(t: Trainer, ckpt: dict, log: Callable[..., None]) -> None:
    """A resumed run's optimizer, scaler, random state and weight average."""
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if t.device.type == "cuda" and ckpt["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    if t.ema and ckpt.get("ema"):
        t.ema.load_state_dict(ckpt["ema"])
    elif ckpt.get("ema"):
        log(f"{t.args.resume} kept a weight average; without --ema-decay this run drops it", flush=True)
    log(f"resumed from {t.args.resume} at step {t.step}", flush=True)


def open_logs(t: Trainer, log: Callable[..., None]) -> Logs:
    args = t.args
    val = None
    if args.val_content_dir and args.val_style_dir and t.main_proc:
        val = (eval_images(args.val_content_dir, args.eval_contents, args.eval_size),
               eval_images(args.val_style_dir, args.eval_styles, args.eval_size))
    writer = None
    if t.main_proc and not args.no_tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(args.out / "tb"))
        except ImportError:
            log("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)", flush=True)
    from tqdm import tqdm

    bar = tqdm(total=args.max_iter, initial=t.step, disable=not t.main_proc, dynamic_ncols=True, unit="step")
    return Logs(args.out, bar, writer, val)


def save(t: Trainer, data: Data, losses: dict, path: Path) -> None:
    """The checkpoint (rank 0 only, atomically): all a resume needs, and what the export records."""
    if not t.main_proc:
        return
    args = t.args
    save_atomic({
        "decoder": t.decoder.state_dict(), "optimizer": t.optimizer.state_dict(), "scaler": t.scaler.state_dict(),
        "step": t.step, "style_scales": t.scales, "ema": t.ema.state_dict() if t.ema else None,
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if t.device.type == "cuda" else []},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "meta": {"losses": losses, "content_dir": str(args.content_dir), "style_dir": str(args.style_dir),
                 "content_images": data.n_content, "style_images": data.n_style, "world_size": t.world,
                 "init": str(args.init or t.init_meta.get("init", "")), "init_step": t.init_step,
                 "wall_s": round(time.time() - t.started, 1)},
    }, path)


def evaluate_now(t: Trainer, logs: Logs) -> None:
    """Held-out losses and a content|style|output grid for the current weights (the average's
    with --ema-decay, the optimizer's as raw_*): eval.jsonl, a PNG, TensorBoard, the bar."""
    t.decoder.eval()
    result, grid = evaluate(t.encoder, t.ema.module if t.ema else t.decoder, *logs.val, t.device, t.amp, t.scales)
    if t.ema:
        raw = evaluate(t.encoder, t.decoder, *logs.val, t.device, t.amp, t.scales)[0]
        result |= {f"raw_{k}": v for k, v in raw.items()}
    t.decoder.train()
    result.update(step=t.step, wall_s=round(time.time() - t.started, 1))
    with open(logs.out / "eval.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    to_image(grid).save(logs.out / f"eval_{t.step:06d}.png")
    if logs.writer:
        for k, v in result.items():
            if k not in ("step", "wall_s"):
                logs.writer.add_scalar(f"eval/{k}", v, t.step)
        logs.writer.add_image("eval/content_style_output", grid, t.step)
    raw = f" (raw {result['raw_content']:.3f} / {result['raw_style']:.3f})" if t.ema else ""
    logs.bar.write(f"step {t.step}: held-out content {result['content']:.3f} style {result['style']:.3f}{raw}")


def report(t: Trainer, data: Data, logs: Logs, terms: dict, lr: float, content: torch.Tensor,
           style: torch.Tensor) -> None:
    """After a step (rank 0): the bar, TensorBoard scalars and image grids, evaluations when due."""
    args, step, writer = t.args, t.step, logs.writer
    logs.bar.update(1)
    if step % 10 == 0 or step % args.log_every == 0 or step % args.save_every == 0 or step == args.max_iter:
        logs.last = as_numbers(terms)
        logs.bar.set_postfix(**{k: f"{v:.3f}" for k, v in logs.last.items()}, lr=f"{lr:.2e}", skipped=data.skipped)
    if writer and step % args.log_every == 0:
        for k, v in logs.last.items():
            writer.add_scalar(f"loss/{k}", v, step)
        for name, x in zip(STYLE_LAYERS, terms["style"]):
            writer.add_scalar(f"loss/style_{name}", x.item(), step)
        writer.add_scalar("lr", lr, step)
        writer.add_scalar("data/skipped_files", data.skipped, step)
    if writer and step % args.grid_every == 0:
        k = min(4, content.shape[0])
        grid = torch.cat([content[:k], style[:k], terms["output"][:k].float().clamp(0, 1)], dim=3)
        writer.add_images("train/content_style_output", grid.float().cpu(), step)
    if logs.val is not None and step % args.eval_every == 0:
        evaluate_now(t, logs)


def train(t: Trainer, data: Data, logs: Logs, stop: list[str]) -> dict | None:
    """Steps until --max-iter, --time-limit or a signal (``stop``); the last step's loss terms."""
    args, terms = t.args, None
    ckpt_path = args.out / "checkpoint.pt"
    while t.step < args.max_iter and not stop:
        if args.time_limit and time.time() - t.started > args.time_limit:
            stop.append(f"--time-limit {args.time_limit:g}s")
            break
        lr = get_lr(args, t.step)
        for group in t.optimizer.param_groups:
            group["lr"] = lr
        content, style = data.next(t.device)
        terms = train_step(t, content, style)
        t.step += 1
        if t.main_proc:
            report(t, data, logs, terms, lr, content, style)
        if t.step % args.save_every == 0:
            save(t, data, logs.last, ckpt_path)
        if t.step == args.recon_steps:  # keep the end of the warm-up: a decoder that reconstructs, before any style
            save(t, data, logs.last, args.out / "checkpoint_recon.pt")
            save(t, data, logs.last, ckpt_path)
    return terms


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
    args.out.mkdir(parents=True, exist_ok=True)
    log = print if rank == 0 else (lambda *a, **k: None)

    t, ckpt = build(args, rank, world, device, amp, log)
    n_content, content_iter = batches(args.content_dir, args, args.seed, rank, world, t.step, device)
    n_style, style_iter = batches(args.style_dir, args, args.seed + 1, rank, world, t.step, device)
    data = Data(n_content, n_style, content_iter, style_iter)
    t.scales = style_scales(args, t.encoder, ckpt, device)
    logs = open_logs(t, log)
    log(f"training on {device} ({amp or 'fp32'}), {n_content} content / {n_style} style images, "
        f"batch {args.batch_size}x{world}, crops {args.crop_size} from {args.image_size}, "
        f"step {t.step} -> {args.max_iter}", flush=True)
    stop: list[str] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _: stop.append(signal.Signals(signum).name))
    t.started = time.time()

    terms = train(t, data, logs, stop)
    # the end: a last eval and checkpoint whatever stopped the loop
    last = as_numbers(terms) if terms is not None and t.main_proc else logs.last
    if logs.val is not None and t.step % args.eval_every != 0:
        evaluate_now(t, logs)  # the final weights always get a held-out number
    save(t, data, last, args.out / "checkpoint.pt")
    logs.bar.close()
    log(f"{'stopped by ' + stop[0] if stop else 'finished'} at step {t.step}; checkpoint {args.out / 'checkpoint.pt'}; "
        f"{data.skipped} unreadable files skipped", flush=True)
    if logs.writer:
        logs.writer.close()
    if world > 1:
        dist.destroy_process_group()
    return {"step": t.step, "skipped": data.skipped, "losses": last}


if __name__ == "__main__":
    reexec_with_jemalloc(["-m", "training.train", *sys.argv[1:]])
    main()
