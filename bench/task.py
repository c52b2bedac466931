"""What a method's fit() receives: one (dataset, shots, seed) cell with the frozen backbone, the few-shot
split, cached features and image loaders. Methods read from it; the engine builds it."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from bench.backbone import Backbone
from bench.data import DatasetCard, DatasetSplits, FewShot
from bench.data.cards import prompt_classname
from bench.errors import BenchError
from bench.data.transforms import load_image, test_transform, train_transform

log = logging.getLogger(__name__)


def derived_seed(*parts) -> int:
    """A 63-bit seed from any parts, stable across processes (hashlib, never the salted hash())."""
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


class ImageItems(Dataset):
    """Few-shot or test items as tensors. With `augment`, view (seed, epoch, index) is deterministic.
    A key is an index (this dataset's `epoch`) or an (epoch, index) pair, so one loader can serve
    many epochs with one worker pool. With `decoded` (a dict), each image is decoded once and kept."""

    def __init__(self, items, transform, augment=False, seed=0, epoch=0, decoded=None):
        self.items, self.transform, self.augment = items, transform, augment
        self.seed, self.epoch, self.decoded = seed, epoch, decoded

    def __len__(self):
        return len(self.items)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        item = self.items[index]
        if self.decoded is None:
            image = load_image(item.path)
        elif index in self.decoded:
            image = self.decoded[index]
        else:
            image = self.decoded[index] = load_image(item.path)
        tensor = self.transform(image, self.seed, epoch, index) if self.augment else self.transform(image)
        return tensor, item.label, index


def epoch_batches(count: int, epoch: int, batch_size: int, shuffle: bool, drop_last: bool,
                  generator: torch.Generator) -> list[list[tuple[int, int]]]:
    """The (epoch, index) keys of one epoch's batches. The order is a plain randperm of the epoch's
    own generator, so it does not depend on DataLoader internals or on how many epochs one loader spans."""
    order = torch.randperm(count, generator=generator).tolist() if shuffle else list(range(count))
    stop = count - count % batch_size if drop_last else count
    return [[(epoch, i) for i in order[start:start + batch_size]] for start in range(0, stop, batch_size)]


class DecodedImages:
    """Test images decoded once as uint8 [N, 3, S, S] (after resize + center crop) and normalised per
    batch with the very ops of ToTensor + Normalize, so batches are bit-identical to streamed ones."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, mean, std):
        self.pixels, self.labels, self.mean, self.std = pixels, labels, tuple(mean), tuple(std)

    @property
    def nbytes(self) -> int:
        return self.pixels.numel() * self.pixels.element_size()

    def batches(self, batch_size: int):
        for start in range(0, len(self.labels), batch_size):
            stop = min(start + batch_size, len(self.labels))
            images = TF.normalize(self.pixels[start:stop].float().div(255), self.mean, self.std)
            yield images, self.labels[start:stop], torch.arange(start, stop)


class _Batches:
    """A re-iterable view of DecodedImages.batches (a DataLoader can be iterated many times too)."""

    def __init__(self, images: DecodedImages, batch_size: int):
        self.images, self.batch_size = images, batch_size

    def __iter__(self):
        return self.images.batches(self.batch_size)

    def __len__(self):
        return math.ceil(len(self.images.labels) / self.batch_size)


DECODED_TRAIN_MAX = 2048  # few-shot images kept decoded per task (16 shots × 128 classes)
_DECODED: OrderedDict = OrderedDict()  # (backbone, dataset, split, transform) → DecodedImages, LRU


def decoded_test_budget() -> int:
    """Bytes of decoded test images kept in memory (BENCH_TEST_IMAGE_CACHE_MB, default 4096; 0 = off).
    At 224 px that is ~26k images: every CoOp test split except ImageNet and Food101, which stream."""
    text = os.environ.get("BENCH_TEST_IMAGE_CACHE_MB", "4096")
    try:
        return int(float(text) * 2**20)
    except ValueError:
        raise BenchError(f"BENCH_TEST_IMAGE_CACHE_MB must be a number of MiB, got '{text}'") from None


@dataclass
class Task:
    card: DatasetCard
    splits: DatasetSplits
    fewshot: FewShot
    shots: int
    seed: int
    backbone: Backbone
    device: torch.device
    precision: str  # what this job runs in: "fp32" | "amp" | "fp16" (bench.method.RUN_PRECISIONS)
    features: object  # bench.features.FeatureStore for this dataset
    workers: int = 0
    _text_cache: dict = field(default_factory=dict, repr=False)
    _decoded_train: dict = field(default_factory=dict, repr=False)  # index → decoded few-shot image

    @property
    def dataset(self) -> str:
        return self.splits.name

    @property
    def classnames(self) -> list[str]:
        """Class names as they go into prompts ('_' replaced by a space)."""
        return [prompt_classname(c) for c in self.splits.classnames]

    @property
    def num_classes(self) -> int:
        return len(self.splits.classnames)

    @property
    def templates(self) -> tuple[str, ...]:
        return tuple(self.card.templates)

    @property
    def logit_scale(self) -> float:
        return float(self.backbone.model.logit_scale.exp())

    def prompts(self, templates=None) -> list[list[str]]:
        return [[t.format(c) for t in (templates or self.templates)] for c in self.classnames]

    @torch.no_grad()
    def text_features(self, templates=None) -> torch.Tensor:
        """L2-normalised class embeddings [C, D] in fp32 on the task device (mean over templates)."""
        key = tuple(templates or self.templates)
        if key not in self._text_cache:
            model = self.backbone.model
            rows = []
            for prompts in self.prompts(key):
                tokens = self.backbone.tokenizer(prompts).to(self.device)
                with self.autocast():
                    emb = model.encode_text(tokens).float()
                emb = torch.nn.functional.normalize(emb, dim=-1).mean(0)
                rows.append(torch.nn.functional.normalize(emb, dim=-1))
            self._text_cache[key] = torch.stack(rows)
        return self._text_cache[key]

    def search_features(self, search: bool, when_no_val: str, fallback: str):
        """The features a method tunes its hyperparameters on, with the record's validation regime and
        where they came from: (features [N, D] or None, regime, config entries). The few-shot val split;
        without one (ImageNet), per `when_no_val`: "train_holdout" (train images outside the K-shot
        draw, bench.data.holdout_val), "test" (the oracle, recorded oracle_test) or "fixed" (none).
        `fallback` says in the warning what the method uses when there is nothing to search on."""
        none = (None, "none", {"val_source": "none", "val_items": 0})
        if not search:
            return none
        if len(self.fewshot.val):
            return self.features.fewshot_val(self.fewshot), "fewshot_val", \
                {"val_source": "fewshot_val", "val_items": len(self.fewshot.val)}
        if when_no_val == "test":
            return self.features.test(), "oracle_test", {"val_source": "test", "val_items": len(self.splits.test)}
        if when_no_val == "fixed":
            return none
        from bench.cache import items_digest
        from bench.data import holdout_val

        items = holdout_val(self.splits, self.fewshot, self.shots, self.seed)
        if not items:  # every train image went into the K-shot draw: nothing honest to search on
            log.warning("%s has no train images outside the %d-shot draw; using %s", self.dataset, self.shots,
                        fallback)
            return none
        # The store's cache key hashes the item list, so each (shots, seed) draw gets its own entry;
        # the digest lets two records be checked for the same draw.
        return self.features.encode("holdout_val", items), "fewshot_val", \
            {"val_source": "train_holdout", "val_items": len(items),
             "val_digest": items_digest(items, self.splits.image_root)}

    def zero_shot_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        feats = torch.nn.functional.normalize(image_features.float(), dim=-1)
        return self.logit_scale * feats @ self.text_features().t()

    def autocast(self):
        """fp16 autocast under "amp" on a GPU; a no-op otherwise ("fp16": the backbone itself is fp16)."""
        if self.precision == "amp" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def generator(self, *tag) -> torch.Generator:
        """A torch RNG owned by the caller, seeded from (task seed, tag): never the global RNG."""
        return torch.Generator().manual_seed(derived_seed(self.seed, *tag))

    def train_images(self, epoch: int, batch_size: int, scale=(0.08, 1.0), shuffle=True, drop_last=False):
        """Augmented few-shot training batches (images, labels, indices) for one epoch."""
        batches = self._train_batches(range(epoch, epoch + 1), batch_size, shuffle, drop_last)
        return self._train_loader(batches, scale)

    def train_epochs(self, epochs: int, batch_size: int, scale=(0.08, 1.0), shuffle=True, drop_last=False):
        """(epoch, images, labels, indices) for every batch of epochs 0..epochs-1 through ONE loader:
        the same batches as train_images(e) for each e, but workers start once, not once per epoch
        (many short epochs would otherwise spend their time forking workers)."""
        batches = self._train_batches(range(epochs), batch_size, shuffle, drop_last)
        for keys, (images, labels, indices) in zip(batches, self._train_loader(batches, scale)):
            yield keys[0][0], images, labels, indices

    def _train_batches(self, epochs, batch_size, shuffle, drop_last):
        count = len(self.fewshot.train)
        return [b for e in epochs
                for b in epoch_batches(count, e, batch_size, shuffle, drop_last, self.generator("shuffle", e))]

    def _train_loader(self, batches, scale):
        transform = train_transform(self.backbone.image_size, scale=scale, mean=self.backbone.mean,
                                    std=self.backbone.std)
        # In-process loading (no workers, e.g. CPU runs) re-decodes the same few JPEGs every epoch:
        # keep them decoded for the task when the few-shot set is small. Workers decode in parallel.
        keep = self.workers == 0 and len(self.fewshot.train) <= DECODED_TRAIN_MAX
        data = ImageItems(self.fewshot.train, transform, augment=True, seed=self.seed,
                          decoded=self._decoded_train if keep else None)
        return DataLoader(data, batch_sampler=batches, num_workers=min(self.workers, len(batches)),
                          pin_memory=self.device.type == "cuda", generator=self.generator("workers"))

    def test_images(self, batch_size: int = 128):
        """(images, labels, indices) batches of the full test split. Decoded once per (backbone, dataset)
        and kept in memory as uint8 when it fits decoded_test_budget(); streamed from disk otherwise."""
        decoded = self._decoded_test_images()
        if decoded is not None:
            return _Batches(decoded, batch_size)
        transform = test_transform(self.backbone.image_size, mean=self.backbone.mean, std=self.backbone.std)
        return self._loader(ImageItems(self.splits.test, transform), batch_size, False, False, ("test",))

    def _decoded_test_images(self) -> DecodedImages | None:
        b, size = self.backbone, self.backbone.image_size
        key = (b.digest, self.splits.name, self.splits.split_digest, size, b.mean, b.std)
        if key in _DECODED:
            _DECODED.move_to_end(key)
            return _DECODED[key]
        need, budget = len(self.splits.test) * 3 * size * size, decoded_test_budget()
        if need > budget:
            return None
        while _DECODED and sum(d.nbytes for d in _DECODED.values()) + need > budget:
            _DECODED.popitem(last=False)  # least recently used dataset goes first
        pixels = T.Compose([T.Resize(size, interpolation=InterpolationMode.BICUBIC), T.CenterCrop(size),
                            T.PILToTensor()])
        loader = self._loader(ImageItems(self.splits.test, pixels), 256, False, False, ("test",))
        parts = [(images, labels) for images, labels, _ in loader]
        images = torch.cat([p[0] for p in parts]) if parts else torch.empty(0, 3, size, size, dtype=torch.uint8)
        labels = torch.cat([p[1] for p in parts]) if parts else torch.empty(0, dtype=torch.long)
        _DECODED[key] = DecodedImages(images, labels, b.mean, b.std)
        return _DECODED[key]

    def _loader(self, data, batch_size, shuffle, drop_last, tag):
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=self.workers, generator=self.generator(*tag),
                          pin_memory=self.device.type == "cuda", persistent_workers=False)
