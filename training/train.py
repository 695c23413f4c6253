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

This file is the loop; beside it: the flags (options.py), the batches (data.py), what a run
reports (logs.py) and its checkpoints (checkpoint.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from model.decoder import load_state, random_decoder
from model.runtime import autocast_dtype, reexec_with_jemalloc, resolve_device
from model.vgg import load_encoder
from training.average import EMA
from training.checkpoint import load as load_checkpoint
from training.checkpoint import restore, save_run
from training.data import Data, batches
from training.evaluate import eval_images
from training.logs import Logs, as_numbers, evaluate_now, open_logs, report
from training.losses import channel_scales, load_style_scales, objective, reconstruction
from training.options import parse_args
from training.quality import grid_penalty


def setup_distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initialises the process group under torchrun."""
    if (world := int(os.environ.get("WORLD_SIZE", "1"))) == 1:
        return 0, 1, 0
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


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
            save_run(t, data, logs.last, ckpt_path)
        if t.step == args.recon_steps:  # keep the end of the warm-up: a decoder that reconstructs, before any style
            save_run(t, data, logs.last, args.out / "checkpoint_recon.pt")
            save_run(t, data, logs.last, ckpt_path)
    return terms


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv, __doc__)
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
    save_run(t, data, last, args.out / "checkpoint.pt")
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
