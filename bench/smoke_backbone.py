"""The smoke backbone: a tiny open_clip CLIP pre-trained in 1-2 minutes on one CPU thread on synthetic shapes.

It exists so the whole suite (every method, the cache, the reports) can run anywhere in seconds and
still mean something: the model has really learned to align "a photo of a red circle." with pictures of
red circles, on fairly clean renders. The smoke datasets shift the images the way real benchmarks do
(clutter, a colour cast, false colour): the image features still separate their classes, but the text
side no longer matches them well, so zero-shot is well above chance yet far below a 16-shot probe and
few-shot tuning has room to help. The result is an ordinary open_clip local-dir (open_clip_config.json +
safetensors weights), loaded through the standard `open_clip.create_model("local-dir:...")` path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from bench.data.synthetic import COLOURS, SHAPES, Style, file_lock, render

log = logging.getLogger(__name__)

SMOKE_MODEL_NAME = "bench-smoke-tiny-clip"
BUILD_VERSION = 1  # bump when the recipe changes: cached builds with another version are rebuilt
DEFAULT_STEPS = 1000
BATCH, LR = 128, 3e-3
MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's, like every real backbone in the suite
STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SIZE = 32
MODEL_CFG = {
    "embed_dim": 64,
    "quick_gelu": True,  # as OpenAI's CLIP: the suite must handle QuickGELU models correctly
    # mean-pooled patch tokens learn shapes much faster than a class token at this size
    "vision_cfg": {"image_size": IMAGE_SIZE, "patch_size": 8, "width": 64, "layers": 3, "head_width": 32,
                   "pool_type": "avg"},
    # context 32 (not 77) keeps it fast but leaves room for CoOp's 16 context tokens + a class name
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
CONFIG_FILE, WEIGHTS_FILE = "open_clip_config.json", "open_clip_model.safetensors"

# Caption templates seen in pre-training; they include the smoke cards' prompt templates.
PAIR_TEMPLATES = ("a photo of a {}.", "a {}.", "a drawing of a {}.", "a picture of a {}.", "a small {}.")
# Share of captions naming colour+shape, the shape only, the colour only. Colour is learned in a few
# steps; shape-only captions keep pushing the encoder to see shapes.
CAPTION_MIX = (0.6, 0.3, 0.1)
COLOUR_TEMPLATES = ("a {} shape.", "something {}.", "a photo of something {}.")
# Pre-training images: (probability, style). Big, near-centred shapes, as in object-centric photos;
# never a colour cast or false colour, which the smoke datasets then add.
PRETRAIN_MIX = ((0.7, Style(size=(0.5, 0.9), spread=0.3)),
                (0.3, Style(size=(0.4, 0.8), spread=0.3, backgrounds=("plain", "clutter"), distractors=(0, 1),
                            noise=6.0)))


def smoke_backbone_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "bench").expanduser() / "smoke" / "tiny-clip"


def register_smoke_config() -> str:
    """Make SMOKE_MODEL_NAME a known open_clip architecture (open_clip reads configs from json files)."""
    if SMOKE_MODEL_NAME not in open_clip.list_models():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{SMOKE_MODEL_NAME}.json"
            path.write_text(json.dumps(MODEL_CFG), encoding="utf-8")
            open_clip.add_model_config(path)  # read now; the registry keeps the entry after the file goes
    return SMOKE_MODEL_NAME


def _fingerprint(steps: int, seed: int) -> dict:
    """What a build depends on: a cached build made with another recipe is rebuilt, never reused."""
    recipe = repr((MODEL_CFG, PAIR_TEMPLATES, COLOUR_TEMPLATES, CAPTION_MIX, PRETRAIN_MIX, MEAN, STD, BATCH, LR))
    return {"version": BUILD_VERSION, "steps": steps, "seed": seed,
            "recipe_sha256": hashlib.sha256(recipe.encode()).hexdigest()[:16]}


def _is_built(path: Path, steps: int, seed: int) -> bool:
    try:
        cfg = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return cfg.get("bench_smoke", {}).get("build") == _fingerprint(steps, seed) and (path / WEIGHTS_FILE).is_file()


def ensure_smoke_backbone(path: Path, steps: int = DEFAULT_STEPS, seed: int = 0) -> Path:
    """Return `path`, first building the smoke backbone there unless a matching build is present."""
    path = Path(path).expanduser()
    if _is_built(path, steps, seed):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(f".{path.name}.lock")):
        if not _is_built(path, steps, seed):  # someone else may have built it while we waited
            build_smoke_backbone(path, steps=steps, seed=seed)
    return path


def build_smoke_backbone(out: Path, steps: int = DEFAULT_STEPS, seed: int = 0) -> dict:
    """Pre-train the tiny CLIP and write it as an open_clip local-dir at `out` (atomically)."""
    start = time.time()
    model, info = pretrain(steps=steps, seed=seed)
    info.update(build=_fingerprint(steps, seed), seconds=round(time.time() - start, 1))
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        _save_local_dir(model, tmp, info)
        if out.exists():  # a stale build: move it aside, then put the new one in place
            trash = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("smoke backbone built in %.1fs at %s", info["seconds"], out)
    return info


def _save_local_dir(model: torch.nn.Module, out: Path, info: dict) -> None:
    from safetensors.torch import save_file

    config = {"model_cfg": MODEL_CFG,
              "preprocess_cfg": {"size": IMAGE_SIZE, "mean": list(MEAN), "std": list(STD),
                                 "interpolation": "bicubic", "resize_mode": "shortest"},
              "bench_smoke": info}  # open_clip ignores extra keys; we keep the build record here
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS_FILE))
    os.chmod(out / WEIGHTS_FILE, 0o644)  # safetensors writes 0600; a shared cache must be readable
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- pre-training
def _pretrain_pool(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n rendered images (uint8 N×3×S×S) and their (colour, shape) indices."""
    colours = sorted(COLOURS)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    attrs = torch.empty(n, 2, dtype=torch.long)
    for i in range(n):
        rng = random.Random(f"pretrain/{seed}/{i}")
        c, s = rng.randrange(len(colours)), rng.randrange(len(SHAPES))
        style = rng.choices([st for _, st in PRETRAIN_MIX], [w for w, _ in PRETRAIN_MIX])[0]
        images[i] = np.asarray(render(rng, colours[c], SHAPES[s], style, IMAGE_SIZE))
        attrs[i, 0], attrs[i, 1] = c, s
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), attrs


def _caption_table(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Every caption used in pre-training, tokenised once, with the (colour, shape) it names (-1 = any)."""
    texts, attrs = [], []
    for c, colour in enumerate(sorted(COLOURS)):
        for s, shape in enumerate(SHAPES):
            texts += [t.format(f"{colour} {shape}") for t in PAIR_TEMPLATES]
            attrs += [(c, s)] * len(PAIR_TEMPLATES)
        texts += [t.format(colour) for t in COLOUR_TEMPLATES]
        attrs += [(c, -1)] * len(COLOUR_TEMPLATES)
    for s, shape in enumerate(SHAPES):
        texts += [t.format(shape) for t in PAIR_TEMPLATES]
        attrs += [(-1, s)] * len(PAIR_TEMPLATES)
    return tokenizer(texts), torch.tensor(attrs)


def _pick_captions(img_attrs: torch.Tensor, cap_attrs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """For each image a random caption that describes it: colour+shape, shape only or colour only."""
    kind = torch.rand(len(img_attrs), generator=gen)
    pair, shape_only = CAPTION_MIX[0], CAPTION_MIX[0] + CAPTION_MIX[1]
    want = img_attrs.clone()
    want[kind >= shape_only, 1] = -1
    want[(kind >= pair) & (kind < shape_only), 0] = -1
    match = (cap_attrs[None, :, :] == want[:, None, :]).all(-1).float()  # B × captions
    return torch.multinomial(match, 1, generator=gen).squeeze(1)


def _contrastive_loss(img, txt, scale, img_attrs, cap_attrs) -> torch.Tensor:
    """CLIP's InfoNCE, but every caption that truly describes an image counts as a positive: with only
    96 (colour, shape) pairs a batch repeats captions, and calling those repeats negatives is wrong."""
    agree = (cap_attrs[None, :, :] == img_attrs[:, None, :]) | (cap_attrs[None, :, :] < 0)
    target = agree.all(-1).float()
    logits = scale * img @ txt.t()
    loss_i = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    loss_t = -(target.t() / target.t().sum(1, keepdim=True) * logits.t().log_softmax(1)).sum(1).mean()
    return (loss_i + loss_t) / 2


def pretrain(steps: int = DEFAULT_STEPS, seed: int = 0, batch: int = BATCH, lr: float = LR):
    """Train the tiny CLIP from scratch; deterministic for a given seed, thread count and CPU."""
    threads = torch.get_num_threads()
    # One thread: results then do not depend on the machine's thread count (reductions split
    # differently), and on a shared CPU two OpenMP threads can be many times slower than one.
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        register_smoke_config()
        model = open_clip.create_model(SMOKE_MODEL_NAME, device="cpu")
        # rendering costs ~0.5 ms an image: 8 fresh images per step, capped (later steps revisit)
        images, img_attrs = _pretrain_pool(max(2048, min(12000, 8 * steps)), seed)
        captions, cap_attrs = _caption_table(open_clip.get_tokenizer(SMOKE_MODEL_NAME))
        losses = _train_loop(model, images, img_attrs, captions, cap_attrs, steps, batch, lr, seed)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model, {"steps": steps, "batch": batch, "lr": lr, "pool": len(images),
                   "loss_first": round(losses[0], 4), "loss_last": round(float(np.mean(losses[-20:])), 4)}


def _train_loop(model, images, img_attrs, captions, cap_attrs, steps, batch, lr, seed) -> list[float]:
    # Speed-ups that leave the result a plain CLIP: captions use ~35 of 49408 tokens, so only those
    # embedding rows are trained (a dense 3.2M-row AdamW update would dominate each step), and captions
    # are cut after the longest EOT (with a causal mask, later positions never affect the EOT feature).
    used = torch.unique(captions)  # ascending, so the remap keeps EOT the largest id (argmax pooling)
    emb = torch.nn.Embedding.from_pretrained(model.token_embedding.weight[used].clone(), freeze=False)
    tokens = torch.searchsorted(used, captions)[:, : int((captions > 0).sum(1).max())]
    model.token_embedding.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad] + [emb.weight]
    decay, rest = [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min(1.0, (t + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps)))
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(images), (batch,), generator=gen)
        cap = _pick_captions(img_attrs[idx], cap_attrs, gen)
        x = (images[idx].float() / 255 - mean) / std
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(_encode_text_short(model, emb, tokens[cap]), dim=-1)
        loss = _contrastive_loss(img, txt, model.logit_scale.exp(), img_attrs[idx], cap_attrs[cap])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
    with torch.no_grad():
        model.token_embedding.weight[used] = emb.weight
    model.token_embedding.requires_grad_(True)
    return losses


def _encode_text_short(model, emb: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's CLIP.encode_text on a truncated sequence (same EOT features, fewer positions)."""
    n = tokens.shape[1]
    x = emb(tokens) + model.positional_embedding[:n]
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    return x[torch.arange(len(x)), tokens.argmax(-1)] @ model.text_projection


# ---------------------------------------------------------------- how good is it? (build report, tests)
def load_split(card, root: Path, part: str, image_size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Images of one split through the protocol's test transform, their labels and the class names."""
    from PIL import Image
    from torchvision import transforms as T

    from bench.data.cards import dataset_dir, image_dir

    split = json.loads((dataset_dir(card, root) / card.split_file).read_text(encoding="utf-8"))
    tf = T.Compose([T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(image_size),
                    T.ToTensor(), T.Normalize(MEAN, STD)])
    images = torch.stack([tf(Image.open(image_dir(card, root) / e[0]).convert("RGB")) for e in split[part]])
    names = dict(sorted({e[1]: e[2] for e in split["train"]}.items()))
    return images, torch.tensor([e[1] for e in split[part]]), list(names.values())


@torch.no_grad()
def smoke_accuracy(model, tokenizer, card, root: Path, shots: int = 16, seed: int = 1) -> dict:
    """Top-1 (%) on the test split: zero-shot with the card's first template, and two few-shot probes
    on `shots` train images per class (nearest class mean; L2-regularised logistic regression)."""
    model.eval()
    test_x, test_y, names = load_split(card, root, "test")
    train_x, train_y, _ = load_split(card, root, "train")
    rng = random.Random(seed)
    pick = [i for c in range(len(names)) for i in rng.sample(torch.where(train_y == c)[0].tolist(), shots)]
    feats = F.normalize(model.encode_image(test_x), dim=-1)
    shot_f, shot_y = F.normalize(model.encode_image(train_x[pick]), dim=-1), train_y[pick]
    prompts = [card.templates[0].format(n.replace("_", " ")) for n in names]
    text = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
    zero_shot = (feats @ text.t()).argmax(1)  # exp(logit_scale) > 0 does not change the argmax
    centroids = F.normalize(torch.stack([shot_f[shot_y == c].mean(0) for c in range(len(names))]), dim=-1)
    with torch.enable_grad():
        probe = _logistic_probe(shot_f, shot_y, len(names))
    acc = lambda pred: round(100.0 * (pred == test_y).float().mean().item(), 2)  # noqa: E731
    return {"classes": len(names), "test": len(test_y), "chance": round(100.0 / len(names), 2),
            "zero_shot": acc(zero_shot), f"centroid_{shots}shot": acc((feats @ centroids.t()).argmax(1)),
            f"logreg_{shots}shot": acc(probe(feats).argmax(1))}


def _logistic_probe(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float = 1e-3) -> torch.nn.Module:
    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + l2 * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head.eval()
