"""Image transforms of the protocol (docs/protocol.md §3), built here rather than taken from open_clip.

The train transform is a pure function of (image, seed, epoch, index): its randomness comes from a
torch.Generator seeded by a hash of those three numbers. So the augmented view of item i in epoch
e is the same whether computed on the fly, in a DataLoader worker, or read from a feature cache.
"""

from __future__ import annotations

import hashlib
import math
from typing import Callable

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from bench.data.images import load_image  # noqa: F401  (part of this module's API)
from bench.errors import BenchError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect-ratio range
_VERSION = "v1"  # bump when a transform's output changes, so cache keys change with it


def transform_id(kind: str, size: int, scale: tuple[float, float] | None = None,
                 mean=CLIP_MEAN, std=CLIP_STD) -> str:
    """A string naming the transform config exactly, for cache keys and records."""
    m = ",".join(repr(float(x)) for x in mean)
    s = ",".join(repr(float(x)) for x in std)
    if kind == "test":
        return f"test-{_VERSION}:resize_bicubic+center_crop:{size}:mean={m}:std={s}"
    if kind == "train":
        lo, hi = scale if scale is not None else (0.08, 1.0)
        return (f"train-{_VERSION}:rrc_bicubic({float(lo)!r},{float(hi)!r})+hflip0.5:{size}"
                f":mean={m}:std={s}:seed=sha256(seed,epoch,index)")
    raise BenchError(f"unknown transform kind '{kind}' (choose from: test, train)")


def test_transform(size: int, mean=CLIP_MEAN, std=CLIP_STD) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the shorter side to `size` (bicubic) → center crop → tensor → normalize."""
    tf = T.Compose([
        T.Resize(size, interpolation=InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
    tf.transform_id = transform_id("test", size, mean=mean, std=std)
    return tf


test_transform.__test__ = False  # pytest would otherwise collect it when a test imports it


def view_seed(seed: int, epoch: int, index: int) -> int:
    """Stable 63-bit seed for one augmented view (hashlib, never the salted built-in hash())."""
    digest = hashlib.sha256(f"bench-view:{int(seed)}:{int(epoch)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class TrainTransform:
    """RandomResizedCrop(scale, bicubic) → RandomHorizontalFlip(0.5) → tensor → normalize."""

    def __init__(self, size: int, scale=(0.08, 1.0), mean=CLIP_MEAN, std=CLIP_STD):
        self.size, self.scale = size, (float(scale[0]), float(scale[1]))
        self.mean, self.std = tuple(mean), tuple(std)
        self.transform_id = transform_id("train", size, self.scale, mean, std)

    def __call__(self, img: Image.Image, seed: int, epoch: int, index: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(view_seed(seed, epoch, index))
        top, left, h, w = crop_params(img.width, img.height, self.scale, g)
        out = TF.resized_crop(img, top, left, h, w, [self.size, self.size],
                              interpolation=InterpolationMode.BICUBIC)
        if torch.rand(1, generator=g).item() < 0.5:
            out = TF.hflip(out)
        return TF.normalize(TF.to_tensor(out), self.mean, self.std)


def train_transform(size: int, scale=(0.08, 1.0), mean=CLIP_MEAN, std=CLIP_STD) -> TrainTransform:
    return TrainTransform(size, scale, mean, std)


def crop_params(width: int, height: int, scale, g: torch.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params, drawing from `g` instead of the global RNG:
    10 tries at a random area/aspect that fits, else the largest center crop within RATIO."""
    area = width * height
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=g).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=g).item())
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=g).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=g).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif in_ratio > RATIO[1]:
        h, w = height, int(round(height * RATIO[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w
