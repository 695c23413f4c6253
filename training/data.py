"""Training data: image folders read recursively, resized and randomly cropped, in an order that a
checkpoint can restore exactly.

Bad files (corrupt, truncated, not images) are skipped and counted, never fatal. Crops are drawn
from a generator seeded by (seed, epoch, index), so a resumed run sees the same crops in the same
order whatever the number of DataLoader workers.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from model.images import IMAGE_SUFFIXES, InvalidImage, open_image, resize_shorter, to_tensor


def list_images(folder: str | Path) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images under {folder}")
    return files


def crop_box(key: tuple[int, int], seed: int, width: int, height: int, size: int,
             jitter: float = 0.0) -> tuple[int, int, int]:
    """(left, top, side) of the square cut for (epoch, index), later resized to ``size``: seeded by
    (seed, epoch, index), so any worker, any resume and the preloaded path all cut the same crop.
    With ``jitter`` the side is drawn from [size, size * (1 + jitter)] (as far as the image allows),
    so crops are scaled down by a random non-integer factor: the 8 x 8 JPEG blocks of small style
    images then no longer land on the decoder's 8-px lattice (weights/TRAINING_LOG.md)."""
    epoch, index = key
    g = torch.Generator().manual_seed(hash((seed, epoch, index)) & 0x7FFF_FFFF_FFFF)
    side = size
    if jitter > 0:  # drawn first and only when asked: jitter 0 keeps the crops of earlier runs
        side = min(int(size * (1 + jitter * float(torch.rand((), generator=g)))), width, height)
    x = int(torch.randint(0, width - side + 1, (1,), generator=g))
    y = int(torch.randint(0, height - side + 1, (1,), generator=g))
    return x, y, side


def turn(key: tuple[int, int], seed: int) -> int:
    """Which of the square's 8 symmetries (4 rotations, each mirrored or not) crop (epoch, index)
    gets under --mirror-crops; its own generator, so the crop boxes stay those of a plain run (an
    int salt: str hashes change from process to process)."""
    g = torch.Generator().manual_seed(hash((seed, key[0], key[1], 8)) & 0x7FFF_FFFF_FFFF)
    return int(torch.randint(0, 8, (1,), generator=g))


def apply_turn(crop: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry ``k`` (0 = identity) of a (C, S, S) crop: ``k % 4`` quarter turns, then a left-right
    mirror when ``k >= 4``."""
    crop = torch.rot90(crop, k % 4, dims=(1, 2))
    return crop.flip(2) if k >= 4 else crop


class CropDataset(Dataset):
    """Item (epoch, index) -> (crop tensor (3, S, S), number of bad files skipped to get it)."""

    def __init__(self, folder: str | Path, image_size: int, crop_size: int, seed: int = 0,
                 scale_jitter: float = 0.0, mirror: bool = False) -> None:
        if crop_size > image_size:
            raise ValueError(f"crop size {crop_size} is larger than the image size {image_size}")
        if scale_jitter < 0:
            raise ValueError(f"scale jitter must be >= 0, got {scale_jitter}")
        self.files = list_images(folder)
        self.image_size, self.crop_size, self.seed = image_size, crop_size, seed
        self.scale_jitter, self.mirror = scale_jitter, mirror

    def turned(self, key: tuple[int, int], crop: torch.Tensor) -> torch.Tensor:
        return apply_turn(crop, turn(key, self.seed)) if self.mirror else crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = key
        s = self.crop_size
        for skipped in range(len(self.files)):
            try:
                img = resize_shorter(open_image(self.files[(index + skipped) % len(self.files)]), self.image_size)
                x, y, side = crop_box(key, self.seed, img.width, img.height, s, self.scale_jitter)
                crop = img.crop((x, y, x + side, y + side))
                if side != s:
                    crop = crop.resize((s, s), Image.Resampling.BICUBIC)
                return self.turned(key, to_tensor(crop)[0]), skipped
            except (InvalidImage, OSError, ValueError):
                continue
        raise RuntimeError("no readable image in the folder")


class ResumableSampler(Sampler):
    """Endless shuffled (epoch, index) keys; state = (epoch, position) in the global order.

    Each rank of a distributed run takes every world_size-th key, so ranks see disjoint images.
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.epoch, self.position = 0, 0

    def order(self, epoch: int) -> list[int]:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch)).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        while True:
            order = self.order(self.epoch)
            while self.position < self.n:
                i = self.position
                self.position += 1
                if i % self.world_size == self.rank:
                    yield self.epoch, order[i]
            self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self, consumed: int) -> dict[str, int]:
        """Where the run is after ``consumed`` samples since (epoch 0, position 0) on this rank."""
        global_consumed = consumed * self.world_size
        return {"epoch": global_consumed // self.n, "position": global_consumed % self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


class PreloadedCrops:
    """The same (epoch, index) -> crop mapping as CropDataset, from images decoded once and held
    on the training device as uint8 (a GPU then never waits for JPEG decoding)."""

    def __init__(self, dataset: CropDataset, device: torch.device) -> None:
        self.dataset, self.device = dataset, device
        self.images: list[torch.Tensor | None] = []
        self.skipped = 0
        for path in dataset.files:
            try:
                img = resize_shorter(open_image(path), dataset.image_size)
                t = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
                self.images.append(t.to(device))
            except (InvalidImage, OSError, ValueError):
                self.images.append(None)
                self.skipped += 1
        if self.skipped == len(self.images):
            raise RuntimeError("no readable image in the folder")

    def crop(self, key: tuple[int, int]) -> torch.Tensor:
        index, n = key[1], len(self.images)
        while self.images[index % n] is None:  # the loader path skips bad files the same way
            index += 1
        img = self.images[index % n]
        s = self.dataset.crop_size
        x, y, side = crop_box(key, self.dataset.seed, img.shape[2], img.shape[1], s, self.dataset.scale_jitter)
        crop = img[:, y:y + side, x:x + side]
        if side != s:
            # torch's antialiased bicubic stands in for PIL's (within a few grey levels)
            out = F.interpolate(crop[None].float(), size=(s, s), mode="bicubic", antialias=True, align_corners=False)
            crop = out[0].round_().clamp_(0, 255).to(torch.uint8)
        return self.dataset.turned(key, crop)

    def batches(self, sampler: "ResumableSampler", batch_size: int) -> Iterator[tuple[torch.Tensor, int]]:
        keys = iter(sampler)
        while True:
            crops = [self.crop(next(keys)) for _ in range(batch_size)]
            yield torch.stack(crops).float().div_(255.0), 0


def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, int]:
    return torch.stack([b[0] for b in batch]), sum(b[1] for b in batch)


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
