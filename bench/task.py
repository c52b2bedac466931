"""What a method's fit() receives: one (dataset, shots, seed) cell with the frozen backbone, the few-shot
split, cached features and image loaders. Methods read from it; the engine builds it."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

from bench.backbone import Backbone
from bench.data import DatasetCard, DatasetSplits, FewShot
from bench.data.cards import prompt_classname
from bench.data.transforms import load_image, test_transform, train_transform


def derived_seed(*parts) -> int:
    """A 63-bit seed from any parts, stable across processes (hashlib, never the salted hash())."""
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


class ImageItems(Dataset):
    """Few-shot or test items as tensors. With `augment`, view (seed, epoch, index) is deterministic."""

    def __init__(self, items, transform, augment=False, seed=0, epoch=0):
        self.items, self.transform, self.augment = items, transform, augment
        self.seed, self.epoch = seed, epoch

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        item = self.items[index]
        image = load_image(item.path)
        tensor = self.transform(image, self.seed, self.epoch, index) if self.augment else self.transform(image)
        return tensor, item.label, index


@dataclass
class Task:
    card: DatasetCard
    splits: DatasetSplits
    fewshot: FewShot
    shots: int
    seed: int
    backbone: Backbone
    device: torch.device
    precision: str  # "amp" | "fp32"
    features: object  # bench.features.FeatureStore for this dataset
    workers: int = 0
    _text_cache: dict = field(default_factory=dict, repr=False)

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

    def zero_shot_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        feats = torch.nn.functional.normalize(image_features.float(), dim=-1)
        return self.logit_scale * feats @ self.text_features().t()

    def autocast(self):
        if self.precision == "amp" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def generator(self, *tag) -> torch.Generator:
        """A torch RNG owned by the caller, seeded from (task seed, tag): never the global RNG."""
        return torch.Generator().manual_seed(derived_seed(self.seed, *tag))

    def train_images(self, epoch: int, batch_size: int, scale=(0.08, 1.0), shuffle=True, drop_last=False):
        """Augmented few-shot training batches (images, labels, indices) for one epoch."""
        transform = train_transform(self.backbone.image_size, scale=scale, mean=self.backbone.mean,
                                    std=self.backbone.std)
        data = ImageItems(self.fewshot.train, transform, augment=True, seed=self.seed, epoch=epoch)
        return self._loader(data, batch_size, shuffle, drop_last, ("shuffle", epoch))

    def test_images(self, batch_size: int = 128):
        transform = test_transform(self.backbone.image_size, mean=self.backbone.mean, std=self.backbone.std)
        return self._loader(ImageItems(self.splits.test, transform), batch_size, False, False, ("test",))

    def _loader(self, data, batch_size, shuffle, drop_last, tag):
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=self.workers, generator=self.generator(*tag),
                          pin_memory=self.device.type == "cuda", persistent_workers=False)
