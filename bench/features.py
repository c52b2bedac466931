"""Frozen-feature cache: image embeddings computed once and shared by every method, shot and seed.

A cached tensor is keyed by everything that changes it (backbone weights digest, dataset + split digest,
item-list digest, transform id, augmented view, feature layer, stored dtype, device kind, precision;
for an encoder under masks also the sha256 of the masks file, a field plain keys do not have).
Files are safetensors written atomically, with the full key and a sha256 of the payload in their
metadata; a file whose key, shape or checksum does not match is rebuilt, never reused. Augmented views
derive their randomness from (seed, epoch, item index), so a cached view is exactly the view an
on-the-fly run would see: the cache changes cost, not results.

Layout: $BENCH_CACHE/features/<backbone digest[:16]>/<dataset>/<split>-<tag>-<key hash>.safetensors,
plus backbone.json (what the digest is) per backbone folder for `bench cache info`.

A cache that cannot be written (read-only, no permission, disk full, quota) only costs time: the store
logs one warning naming the folder and the reason, stops writing, and keeps computing in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from bench import progress
from bench.cache import cache_root, cache_summary, clear_cache, features_root, items_digest  # noqa: F401 (API)
from bench.data.images import load_image
from bench.data.transforms import test_transform, train_transform
from bench.errors import UNWRITABLE  # write errors after which the job goes on uncached

log = logging.getLogger(__name__)
FEATURE_LAYER = "image_embedding"  # encode_image output: after the projection, not normalised
FORMAT = 3  # bump when the file layout or the key changes (3: the precision joined the key)
ENCODE_BATCH = 256
_warned_roots: set[str] = set()  # one warning per cache folder per process, not one per job


class _Plain(torch.utils.data.Dataset):
    def __init__(self, items, transform):
        self.items, self.transform = items, transform

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.transform(load_image(self.items[i].path))


class _Views(torch.utils.data.Dataset):
    """Item i → its augmented views for every requested epoch, stacked [E, 3, H, W]. The JPEG is
    decoded once and each deterministic view is cut from the decoded image (transforms never mutate
    their input, so this equals decoding from disk for every view)."""

    def __init__(self, items, transform, seed, epochs):
        self.items, self.transform, self.seed, self.epochs = items, transform, seed, list(epochs)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        image = load_image(self.items[i].path)
        return torch.stack([self.transform(image, self.seed, e, i) for e in self.epochs])


class FeatureStore:
    """Features of one (backbone, dataset). `enabled=False` recomputes everything (for benchmarks).
    `masks`: the sha256 of the masks file the backbone's image encoder runs under (bench.masking.
    masked_model), part of every key; empty for the plain encoder, whose keys it leaves unchanged."""

    def __init__(self, backbone, splits, device, precision="fp32", workers=0, root=None, enabled=True,
                 masks: str = ""):
        self.backbone, self.splits, self.device = backbone, splits, torch.device(device)
        self.precision, self.workers, self.enabled, self.masks = precision, workers, enabled, masks
        self.root = Path(root) if root else features_root()
        self._memory: dict[str, tuple] = {}  # plain (non-augmented) features only: views are per task
        self._digests: dict[int, tuple] = {}
        self._unwritable = False  # set by the first write that fails for want of space or permission
        self.stats = {"computed": 0, "disk_hits": 0, "memory_hits": 0, "images_encoded": 0, "encode_s": 0.0}

    # ---------------------------------------------------------------- public API
    def test(self):
        return self.encode("test", self.splits.test)

    def fewshot_val(self, fewshot):
        return self.encode("fewshot_val", fewshot.val)

    def fewshot_train(self, fewshot, seed: int, epoch: int | None = None, scale=(0.08, 1.0)):
        """Plain (test-transform) features when epoch is None, else augmented view (seed, epoch)."""
        if epoch is None:
            return self.encode("fewshot_train", fewshot.train)
        return self.train_views(fewshot, seed, [epoch], scale)[0]

    def train_views(self, fewshot, seed: int, epochs, scale=(0.08, 1.0)) -> list[tuple]:
        """[(features [N, D] fp32 CPU, labels)] for each epoch in `epochs` (an int = range(epochs)).
        Missing views are encoded together in one batched pass (each image decoded once)."""
        epochs = list(range(epochs)) if isinstance(epochs, int) else [int(e) for e in epochs]
        items, scale = fewshot.train, (float(scale[0]), float(scale[1]))
        base = self._key("fewshot_train", items, (seed, 0), scale)
        keys = {e: {**base, "view": [seed, e]} for e in epochs}
        found = {e: self._read(keys[e]) for e in epochs} if self.enabled else {}
        missing = [e for e in epochs if found.get(e) is None]
        self.stats["disk_hits"] += len(epochs) - len(missing)
        if missing:
            labels = torch.tensor([it.label for it in items], dtype=torch.long)
            feats = self._compute_views(items, seed, missing, scale,
                                        f"encoding {self.splits.name}/fewshot_train views (seed {seed})")
            for j, e in enumerate(missing):
                found[e] = (feats[j], labels)
                self._write(keys[e], found[e])
            self.stats["computed"] += len(missing)
        return [(found[e][0].float(), found[e][1]) for e in epochs]

    def encode(self, split: str, items, view=None, scale=(0.08, 1.0)):
        """(features [N, D] fp32 on CPU, labels [N] int64) for `items`, from cache when possible."""
        if view is not None:
            raise ValueError("augmented views go through train_views()")
        key = self._key(split, items, None, scale)
        name = _key_hash(key)
        if name in self._memory:  # a copy: a method that edits its input must not edit the cache
            self.stats["memory_hits"] += 1
            return tuple(t.clone() for t in self._memory[name])
        result = self._read(key) if self.enabled else None
        if result is None:
            labels = torch.tensor([it.label for it in items], dtype=torch.long)
            result = (self._compute_plain(items, f"encoding {self.splits.name}/{split}"), labels)
            self.stats["computed"] += 1
            self._write(key, result)
        else:
            self.stats["disk_hits"] += 1
        result = (result[0].float(), result[1])
        if self.enabled:
            self._memory[name] = tuple(t.clone() for t in result)
        return result

    # ---------------------------------------------------------------- keys and files
    def _key(self, split, items, view, scale) -> dict:
        b = self.backbone
        if view is None:
            tid = test_transform(b.image_size, mean=b.mean, std=b.std).transform_id
        else:
            tid = train_transform(b.image_size, scale=scale, mean=b.mean, std=b.std).transform_id
        key = {"format": FORMAT, "backbone": b.digest, "dataset": self.splits.name,
               "split_digest": self.splits.split_digest, "split": split, "count": len(items),
               "items": self._items_digest(items), "transform": tid,
               "view": list(view) if view is not None else None, "layer": FEATURE_LAYER,
               "dtype": str(self._store_dtype()).removeprefix("torch."), "device": self.device.type,
               "precision": self.precision}  # amp and the fp16 model both store fp16, yet differ
        return {**key, "masks": self.masks} if self.masks else key

    def _items_digest(self, items) -> str:
        """Memoised per list object (the list is kept referenced, so its id cannot be reused): hashing a
        50k-item test split on every job would otherwise cost more than reading its features."""
        held = self._digests.get(id(items))
        if held is None or held[0] is not items or held[1] != len(items):
            if len(self._digests) > 64:  # few-shot lists come and go with jobs: keep it bounded
                self._digests.clear()
            held = self._digests[id(items)] = (items, len(items), items_digest(items, self.splits.image_root))
        return held[2]

    def _path(self, key: dict) -> Path:
        tag = "plain" if key["view"] is None else f"s{key['view'][0]}-e{key['view'][1]:04d}"
        folder = self.root / self.backbone.digest[:16] / self.splits.name
        return folder / f"{key['split']}-{tag}-{_key_hash(key)}.safetensors"

    def _read(self, key: dict):
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), "pt") as handle:
                meta = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
            stored_key = json.loads(meta.get("key", "null"))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            log.warning("feature cache file %s is corrupt (%s); rebuilding", path, exc)
            return None
        feats, labels = tensors.get("features"), tensors.get("labels")
        ok = stored_key == key and feats is not None and labels is not None \
            and len(feats) == key["count"] == len(labels) and meta.get("sha256") == _payload_sha(feats, labels)
        if not ok:
            log.warning("feature cache file %s is stale or damaged; rebuilding", path)
            return None
        return feats, labels

    def _write(self, key: dict, result: tuple) -> None:
        if not self.enabled or self._unwritable:
            return
        feats, labels = result[0].contiguous(), result[1].contiguous()
        meta = {"key": json.dumps(key, sort_keys=True), "sha256": _payload_sha(feats, labels)}
        try:
            atomic_write_bytes(self._path(key), save({"features": feats, "labels": labels}, metadata=meta))
            self._describe_backbone()
        except OSError as exc:
            if exc.errno not in UNWRITABLE:
                raise
            self._unwritable = True  # stop trying: on a full disk every attempt would fail again
            if str(self.root) not in _warned_roots:
                _warned_roots.add(str(self.root))
                log.warning("feature cache %s is not writable (%s); going on without caching features",
                            self.root, exc.strerror or exc)

    def _describe_backbone(self) -> None:
        path = self.root / self.backbone.digest[:16] / "backbone.json"
        if not path.exists():
            info = self.backbone.describe() if hasattr(self.backbone, "describe") else {}
            atomic_write_bytes(path, json.dumps({"digest": self.backbone.digest, **info}, default=str).encode())

    # ---------------------------------------------------------------- encoding
    def _store_dtype(self) -> torch.dtype:
        """Under AMP and with CLIP's fp16 model (bench.method.RUN_PRECISIONS) the encoder emits fp16:
        storing fp16 is lossless and halves the cache."""
        amp = self.precision == "amp" and self.device.type == "cuda"
        return torch.float16 if amp or self.precision == "fp16" else torch.float32

    def _autocast(self):
        if self.precision == "amp" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()  # fp16: the model itself is fp16, as CoOp's and lpclip's CLIP

    def _loader(self, data, batch_size):
        return torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=self.workers,
                                           pin_memory=self.device.type == "cuda")

    @torch.no_grad()
    def _run(self, images: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        out = []
        for chunk in images.split(ENCODE_BATCH):
            with self._autocast():
                # the fp16 model takes fp16 images (CLIP's `image.type(self.dtype)`); others fp32
                dtype = torch.float16 if self.precision == "fp16" else torch.float32
                feats = self.backbone.model.encode_image(chunk.to(self.device, dtype, non_blocking=True))
            out.append(feats.to(self._store_dtype()).cpu())
        self.stats["images_encoded"] += len(images)
        self.stats["encode_s"] += time.perf_counter() - started
        return torch.cat(out)

    def _compute_plain(self, items, stage: str = "encoding images") -> torch.Tensor:
        """Progress (bench.progress): images encoded of len(items)."""
        b = self.backbone
        data = _Plain(items, test_transform(b.image_size, mean=b.mean, std=b.std))
        feats, done = [], 0
        if items:
            progress.report(stage, 0, len(items))
        for images in self._loader(data, ENCODE_BATCH):
            feats.append(self._run(images))
            done += len(images)
            progress.report(stage, done, len(items))
        return torch.cat(feats) if feats else torch.empty(0, b.model.visual.output_dim, dtype=self._store_dtype())

    def _compute_views(self, items, seed, epochs, scale, stage: str = "encoding views") -> torch.Tensor:
        """[E, N, D] for the given epochs: batches hold whole items × all epochs (one decode each).
        Progress (bench.progress): images (item × epoch views) encoded of len(items) × len(epochs)."""
        b = self.backbone
        transform = train_transform(b.image_size, scale=scale, mean=b.mean, std=b.std)
        out = torch.empty(len(epochs), len(items), b.model.visual.output_dim, dtype=self._store_dtype())
        start, total = 0, len(items) * len(epochs)
        if total:
            progress.report(stage, 0, total)
        for views in self._loader(_Views(items, transform, seed, epochs), max(1, ENCODE_BATCH // len(epochs))):
            n = len(views)  # views: [n items, E, 3, H, W]
            feats = self._run(views.flatten(0, 1)).view(n, len(epochs), -1)
            out[:, start:start + n] = feats.transpose(0, 1)
            start += n
            progress.report(stage, start * len(epochs), total)
        return out


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file + rename, so a reader never sees half a file. No fsync (unlike result records): a file
    torn by a crash fails its sha256 check on the next read and is rebuilt, and syncing the hundreds of
    small per-epoch view files a job writes would cost more than computing them on small problems."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def _payload_sha(feats: torch.Tensor, labels: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in (feats, labels):
        digest.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
