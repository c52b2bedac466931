"""Frozen-feature cache: image embeddings computed once and shared by every method, shot and seed.

A cached tensor is keyed by everything that changes it (backbone weights digest, dataset + split digest,
item-list digest, transform id, augmented view, feature layer, dtype). Files are safetensors written
atomically, with the full key in their metadata; a file whose key or shape does not match is rebuilt,
never reused. Augmented views derive their randomness from (seed, epoch, item index), so a cached view
is exactly the view an on-the-fly run would see: the cache changes cost, not results."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors import SafetensorsError
from safetensors.torch import load_file, save

from bench.results import atomic_write_bytes

log = logging.getLogger(__name__)
FEATURE_LAYER = "image_embedding"  # encode_image output: after the projection, not normalised


def cache_root() -> Path:
    return Path(os.environ.get("BENCH_CACHE", "~/.cache/bench")).expanduser()


def items_digest(items) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{Path(item.path).name}\t{item.label}\n".encode())
    return digest.hexdigest()


class FeatureStore:
    """Features of one (backbone, dataset). `enabled=False` recomputes everything (for benchmarks)."""

    def __init__(self, backbone, splits, device, precision="amp", workers=0, root=None, enabled=True):
        self.backbone, self.splits, self.device = backbone, splits, torch.device(device)
        self.precision, self.workers, self.enabled = precision, workers, enabled
        self.root = Path(root) if root else cache_root() / "features"
        self._memory: dict[str, tuple] = {}
        self.stats = {"computed": 0, "disk_hits": 0, "memory_hits": 0}

    def test(self):
        return self.encode("test", self.splits.test)

    def fewshot_val(self, fewshot):
        return self.encode("fewshot_val", fewshot.val)

    def fewshot_train(self, fewshot, seed: int, epoch: int | None = None, scale=(0.08, 1.0)):
        """Plain (test-transform) features when epoch is None, else augmented view (seed, epoch)."""
        if epoch is None:
            return self.encode("fewshot_train", fewshot.train)
        return self.encode("fewshot_train", fewshot.train, view=(seed, epoch), scale=tuple(scale))

    def encode(self, split: str, items, view=None, scale=(0.08, 1.0)):
        """(features [N, D] fp32 on CPU, labels [N] int64) for `items`, from cache when possible."""
        key = self._key(split, items, view, scale)
        name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        if name in self._memory:
            self.stats["memory_hits"] += 1
            return self._memory[name]
        path = self.root / self.backbone.digest[:16] / self.splits.name / f"{name}.safetensors"
        result = self._read(path, key, len(items)) if self.enabled else None
        if result is None:
            result = self._compute(items, view, scale)
            self.stats["computed"] += 1
            if self.enabled:
                blob = save({"features": result[0], "labels": result[1]}, metadata={"key": json.dumps(key)})
                atomic_write_bytes(path, blob)
        else:
            self.stats["disk_hits"] += 1
        if self.enabled:
            self._memory[name] = result
        return result

    def _key(self, split, items, view, scale) -> dict:
        b = self.backbone
        transform = {"size": b.image_size, "mean": list(b.mean), "std": list(b.std)}
        if view is not None:
            transform.update(kind="train_rrc_flip", scale=list(scale), seed=view[0], epoch=view[1])
        else:
            transform["kind"] = "test_resize_centercrop"
        return {"backbone": b.digest, "dataset": self.splits.name, "split_digest": self.splits.split_digest,
                "split": split, "items": items_digest(items), "transform": transform,
                "layer": FEATURE_LAYER, "dtype": "float32", "amp": self._amp_dtype()}

    def _read(self, path: Path, key: dict, count: int):
        if not path.exists():
            return None
        try:
            tensors = load_file(str(path))
            from safetensors import safe_open

            with safe_open(str(path), "pt") as handle:
                stored_key = json.loads(handle.metadata().get("key", "null"))
        except (SafetensorsError, OSError, ValueError, json.JSONDecodeError) as exc:
            log.warning("feature cache file %s is corrupt (%s); rebuilding", path, exc)
            return None
        feats, labels = tensors.get("features"), tensors.get("labels")
        if stored_key != key or feats is None or labels is None or len(feats) != count or len(labels) != count:
            log.warning("feature cache file %s is stale; rebuilding", path)
            return None
        return feats, labels

    def _amp_dtype(self) -> str:
        return "float16" if self.precision == "amp" and self.device.type == "cuda" else "none"

    @torch.no_grad()
    def _compute(self, items, view, scale):
        from bench.task import ImageItems
        from bench.data.transforms import test_transform, train_transform

        b = self.backbone
        if view is None:
            data = ImageItems(items, test_transform(b.image_size, mean=b.mean, std=b.std))
        else:
            transform = train_transform(b.image_size, scale=scale, mean=b.mean, std=b.std)
            data = ImageItems(items, transform, augment=True, seed=view[0], epoch=view[1])
        loader = torch.utils.data.DataLoader(data, batch_size=256, num_workers=self.workers,
                                             pin_memory=self.device.type == "cuda")
        feats, labels = [], []
        for images, batch_labels, _ in loader:
            with self._autocast():
                feats.append(b.model.encode_image(images.to(self.device, non_blocking=True)).float().cpu())
            labels.append(batch_labels)
        dim = b.model.visual.output_dim
        return (torch.cat(feats) if feats else torch.empty(0, dim)), (torch.cat(labels) if labels else torch.empty(0, dtype=torch.long))

    def _autocast(self):
        import contextlib

        if self._amp_dtype() == "float16":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()
