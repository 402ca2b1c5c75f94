"""Train-time augmentation of frames and images, batched on the training device.

The reference code (OGM-GE, Remix, BSS, MLA) trains frames and images with torchvision's
``RandomResizedCrop(224)`` + ``RandomHorizontalFlip()`` and evaluates with a plain resize; it draws
new crop and flip parameters for every frame (the transform is called inside the frame loop).
:class:`TrainAugment` does the same to a whole batch at once: the parameters are drawn on the host
exactly as torchvision draws them (10 tries at a random area in ``scale`` and log-uniform aspect
ratio in ``ratio``, else the central crop of the largest allowed aspect ratio), then one
``grid_sample`` resamples every crop back to the input size on the batch's device. Sampling
coordinates are clamped to the crop, so the result equals crop-then-bilinear-resize (align_corners
False; the crop is never larger than the output, so antialiasing would not apply). Frames and images
arrive normalised; cropping, resizing and flipping commute with the per-channel normalisation.

Spectrograms and tokens are left alone, as in the references. Every draw comes from a generator
seeded by (run seed, global step, DDP rank), so a resumed run augments exactly as an uninterrupted
one and ranks do not repeat each other's crops.

The cache stores frames already resized (e.g. to 224x224), so crops are taken from that image rather
than from the original video frame: a documented deviation (docs/samplers.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

AUGMENTED_KINDS = ("frames", "image")


def crop_params(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    tries: int = 10,
) -> torch.Tensor:
    """``[n, 4]`` integer crops (top, left, height, width), drawn as torchvision's RandomResizedCrop."""
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, tries, generator=generator))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, tries, generator=generator))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.int().argmax(dim=1)  # the first try that fits, as torchvision's loop returns it
    pick = torch.arange(n)
    h, w = h[pick, first], w[pick, first]
    top = torch.floor(torch.rand(n, generator=generator) * (height - h + 1))
    left = torch.floor(torch.rand(n, generator=generator) * (width - w + 1))
    # no try fitted: the central crop, its aspect ratio clamped into ``ratio``
    in_ratio = width / height
    if in_ratio < ratio[0]:
        cw, ch = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        cw, ch = round(height * ratio[1]), height
    else:
        cw, ch = width, height
    fallback = ~ok.any(dim=1)
    h = torch.where(fallback, float(ch), h)
    w = torch.where(fallback, float(cw), w)
    top = torch.where(fallback, float((height - ch) // 2), top)
    left = torch.where(fallback, float((width - cw) // 2), left)
    return torch.stack([top, left, h, w], dim=1).long()


def resized_crops(images: torch.Tensor, crops: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """``images [n, C, H, W]`` -> each crop bilinearly resized to H x W, mirrored where ``flips``."""
    n, _, height, width = images.shape
    device = images.device
    top, left, h, w = (crops[:, k].to(device=device, dtype=torch.float32).view(n, 1) for k in range(4))
    # pixel-centre source coordinates of each output pixel, clamped to the crop (crop, then resize)
    ys = top + (torch.arange(height, device=device) + 0.5) * h / height - 0.5
    xs = left + (torch.arange(width, device=device) + 0.5) * w / width - 0.5
    ys = torch.minimum(torch.maximum(ys, top), top + h - 1)
    xs = torch.minimum(torch.maximum(xs, left), left + w - 1)
    xs = torch.where(flips.to(device).view(n, 1), xs.flip(1), xs)
    grid_y = ((2 * ys + 1) / height - 1).view(n, height, 1).expand(n, height, width)
    grid_x = ((2 * xs + 1) / width - 1).view(n, 1, width).expand(n, height, width)
    grid = torch.stack([grid_x, grid_y], dim=-1).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


OPTIONS = ("scale", "ratio", "flip", "per")


def build_augment(kinds: Mapping[str, str], seed: int, rank: int, options: Mapping[str, Any]) -> TrainAugment:
    """A :class:`TrainAugment` from ``--augment-opt`` options; an unknown name is one clear line."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"augment option {', '.join(unknown)} is not one of {', '.join(OPTIONS)}")
    return TrainAugment(kinds, seed, rank, **options)


class TrainAugment:
    """RandomResizedCrop + horizontal flip of every frames/image modality of a training batch.

    Options: ``scale`` ((0.08, 1.0)) and ``ratio`` ((3/4, 4/3)) as torchvision's, ``flip`` (0.5,
    the flip probability), ``per`` (``frame``: new parameters for every frame, as the reference code;
    ``clip``: one crop and flip for all frames of a sample).
    """

    def __init__(
        self,
        kinds: Mapping[str, str],
        seed: int,
        rank: int = 0,
        scale: tuple[float, float] | list[float] = (0.08, 1.0),
        ratio: tuple[float, float] | list[float] = (3 / 4, 4 / 3),
        flip: float = 0.5,
        per: str = "frame",
    ) -> None:
        if per not in ("frame", "clip"):
            raise ValueError(f"augment option per={per!r} is not one of frame, clip")
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"augment option scale={scale!r}: expected [lo, hi] with 0 < lo <= hi <= 1")
        if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"augment option ratio={ratio!r}: expected [lo, hi] with 0 < lo <= hi")
        if not 0 <= flip <= 1:
            raise ValueError(f"augment option flip={flip!r} must be a probability in [0, 1]")
        self.modalities = [m for m, kind in kinds.items() if kind in AUGMENTED_KINDS]
        self.seed, self.rank = int(seed), int(rank)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.flip = float(flip)
        self.per = per

    def generator(self, step: int) -> torch.Generator:
        """The host generator of one step: a function of (seed, step, rank) alone, for exact resume."""
        state = np.random.SeedSequence([self.seed, int(step), self.rank, 0xA06]).generate_state(2)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def __call__(self, batch: dict[str, Any], step: int) -> dict[str, Any]:
        """A new batch dict with the frames/image tensors augmented (other entries shared)."""
        todo = [m for m in self.modalities if torch.is_tensor(batch.get(m))]
        if not todo:
            return batch
        generator = self.generator(step)
        out = dict(batch)
        for m in todo:
            x = batch[m]
            clip = x.dim() == 5  # frames [B, T, 3, H, W]; images [B, 3, H, W]
            b, t = x.shape[0], x.shape[1] if clip else 1
            height, width = x.shape[-2:]
            draws = b * t if self.per == "frame" else b
            crops = crop_params(draws, height, width, generator, self.scale, self.ratio)
            flips = torch.rand(draws, generator=generator) < self.flip
            if self.per == "clip" and t > 1:
                crops, flips = crops.repeat_interleave(t, 0), flips.repeat_interleave(t, 0)
            images = x.reshape(b * t, *x.shape[-3:])
            out[m] = resized_crops(images, crops, flips).reshape(x.shape)
        return out
