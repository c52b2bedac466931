"""The smoke backbone: a tiny open_clip CLIP pre-trained on synthetic shapes, shipped with bench.

It exists so the whole suite (every method, the cache, the reports) can run anywhere in minutes and
still mean something: the model has really learned to align "a photo of a red circle." with pictures of
red circles, on fairly clean renders. The smoke datasets shift the images the way real benchmarks do
(clutter, a colour cast, false colour, patterned fills): the image features still separate their
classes, but the text side no longer matches them well, so zero-shot is well above chance yet clearly
below a 16-shot probe and few-shot tuning has room to help.

What ships: `bench/assets/smoke_tiny/` holds `manifest.json` (the open_clip model and preprocess config,
how it was built, and the sha256 of the weights file) and `weights.safetensors` (fp16; the token
embedding is stored only for the 50 token ids its captions use, the other 49k rows are zero, so the
file is 0.26 MB instead of 6.6 MB). Loading never trains: `ensure_smoke_backbone` checks the weights
file's digest (a mismatch is an error that names the file and how to rebuild it), expands it once into
an ordinary open_clip local-dir under $BENCH_CACHE/smoke/tiny-clip (open_clip_config.json + safetensors)
and returns that folder for `open_clip.create_model("local-dir:...")`, which casts the weights to fp32.

The weights are made by `python scripts/build_smoke_backbone.py` (a few minutes on one CPU thread;
deterministic for a given torch build: same recipe and seed, same bytes and digest).
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
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from bench.cache import cache_root
from bench.data.synthetic import COLOURS, SHAPES, Style, file_lock, render
from bench.errors import BenchError

log = logging.getLogger(__name__)

SMOKE_MODEL_NAME = "bench-smoke-tiny-clip"
BUILD_VERSION = 2  # bump when the recipe changes
DEFAULT_STEPS = 3000
BATCH, LR = 128, 3e-3
# CLIP's temperature: OpenAI's models end pre-training at the clamp, exp(logit_scale) = 100. The tiny model
# would settle near 20, and few-shot methods that train through the softmax (CoOp, CLIP-Adapter, mask
# tuning) would then take ~4x smaller steps than with a real CLIP at their released learning rates.
LOGIT_SCALE = 100.0
MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's, like every real backbone in the suite
STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SIZE = 32
MODEL_CFG = {
    "embed_dim": 64,
    "quick_gelu": True,  # as OpenAI's CLIP: the suite must handle QuickGELU models correctly
    # mean-pooled patch tokens learn shapes much faster than a class token at this size
    "vision_cfg": {"image_size": IMAGE_SIZE, "patch_size": 8, "width": 48, "layers": 3, "head_width": 24,
                   "pool_type": "avg"},
    # context 32 (not 77) keeps it fast but leaves room for CoOp's 16 context tokens + a class name
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
PREPROCESS_CFG = {"size": IMAGE_SIZE, "mean": list(MEAN), "std": list(STD), "interpolation": "bicubic",
                  "resize_mode": "shortest"}

ASSET_DIR = Path(__file__).resolve().parent / "assets" / "smoke_tiny"
MANIFEST_FILE, ASSET_WEIGHTS = "manifest.json", "weights.safetensors"
CONFIG_FILE, WEIGHTS_FILE = "open_clip_config.json", "open_clip_model.safetensors"  # the expanded local-dir
EMBED_KEY = "token_embedding.weight"
REBUILD = "python scripts/build_smoke_backbone.py"

# Caption templates seen in pre-training (varied lengths and wordings, as web captions are); they
# include the smoke cards' prompt templates.
PAIR_TEMPLATES = ("a photo of a {}.", "a {}.", "a drawing of a {}.", "a picture of a {}.", "a small {}.",
                  "a big {}.", "an image of a {}.", "a rendering of a {}.", "a close-up photo of a {}.",
                  "there is a {} in the picture.", "a photo of the {}.", "a textured {}.")
# Captions whose words before the name carry no information: each "x" token's embedding is replaced by
# fresh N(0, NOISE_STD²) noise every step. A web-scale CLIP has seen countless uninformative prefixes and
# is not thrown by them; this gives the tiny text tower the same robustness, so a prompt made of random
# vectors (CoOp's initial context) still reads as "the class name" rather than as garbage.
NOISE_TEMPLATES = tuple(" ".join(["x"] * k) + " {}." for k in (1, 2, 4, 8, 12, 16))
NOISE_TOKEN, NOISE_STD = "x", 0.02
# Share of captions naming colour+shape, the shape only, the colour only. Colour is learned in a few
# steps; shape-only captions keep pushing the encoder to see shapes.
CAPTION_MIX = (0.6, 0.3, 0.1)
COLOUR_TEMPLATES = ("a {} shape.", "something {}.", "a photo of something {}.")
# Pre-training images are rendered at the datasets' size and seen through a random resized crop (this
# share of them; area range as RandomResizedCrop's scale) or whole, resized to IMAGE_SIZE, flipped half the
# time: few-shot methods train on such crops (scale 0.08-1), and a CLIP that never saw a partial view
# of an object would read most of them as noise.
POOL_SIZE, CROP_SHARE, CROP_SCALE = 48, 0.5, (0.25, 1.0)
# Captions of images in a shifted style (the style index in PRETRAIN_MIX's third field): a hue-rotated
# ("tinted") and a channel-swapped ("false colour") rendering, as the web has photos with a colour cast
# and false-colour satellite pictures, described as such. Their colour words name the object's true
# colour; plain captions never describe them. So the text tower knows words for such shifts, as CLIP
# knows "satellite photo", and a learned context (CoOp) can find them. The smoke datasets use other
# shifts (a +40 degree cast, another channel order), so no wording fixes them outright.
STYLE_CAPTIONS = {1: ("a tinted photo of a {}.", "a {}, tinted."),
                  2: ("a false colour photo of a {}.", "a {} in false colour.")}
# Pre-training images: (probability, style, caption style). Big, near-centred shapes, as in object-centric
# photos, some on busy or patterned backgrounds, some with patterned fills, and some in a shifted style.
_BUSY = dict(size=(0.4, 0.8), spread=0.4, backgrounds=("plain", "clutter", "texture"), distractors=(0, 2),
             noise=6.0)
PRETRAIN_MIX = ((0.35, Style(size=(0.5, 0.9), spread=0.3), 0),
                (0.25, Style(**_BUSY), 0),
                (0.16, Style(size=(0.45, 0.85), spread=0.4, backgrounds=("plain", "texture"), fill="texture",
                             distractors=(0, 1), noise=6.0), 0),
                (0.12, Style(**_BUSY, hue_shift=-35.0), 1),
                (0.12, Style(**{**_BUSY, "backgrounds": ("clutter", "texture")}, fill="texture", channels="BGR"),
                 2))


# ---------------------------------------------------------------- the shipped asset
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_asset(asset_dir: Path = ASSET_DIR) -> dict:
    """The asset's manifest, after checking that the weights file is the one it names (sha256)."""
    asset_dir = Path(asset_dir)
    manifest_path, weights = asset_dir / MANIFEST_FILE, asset_dir / ASSET_WEIGHTS
    how = (f"reinstall bench, or rebuild the file with `{REBUILD}` (deterministic, a few minutes on a CPU; "
           f"writes {ASSET_DIR})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        expected = manifest["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"smoke backbone: cannot read {manifest_path} ({exc}); {how}") from None
    if not weights.is_file():
        raise BenchError(f"smoke backbone: {weights} is missing; {how}")
    actual = sha256_file(weights)
    if actual != expected:
        raise BenchError(f"smoke backbone: {weights} has sha256 {actual}, but {manifest_path.name} expects "
                         f"{expected}: the file is damaged or was changed; {how}")
    return manifest


def smoke_backbone_dir() -> Path:
    """Where the shipped weights are expanded into an open_clip local-dir."""
    return cache_root() / "smoke" / "tiny-clip"


def ensure_smoke_backbone(path: Path | None = None, asset_dir: Path = ASSET_DIR) -> Path:
    """Return an open_clip local-dir holding the shipped smoke backbone (verified, never trained here),
    expanding the asset at `path` (default smoke_backbone_dir()) first unless a matching copy is there."""
    manifest = read_asset(asset_dir)
    path = Path(path or smoke_backbone_dir()).expanduser()
    if _is_expanded(path, manifest["weights_sha256"]):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(f".{path.name}.lock")):
        if not _is_expanded(path, manifest["weights_sha256"]):  # another process may have done it
            _expand(Path(asset_dir), manifest, path)
    return path


def _is_expanded(path: Path, asset_sha: str) -> bool:
    try:
        info = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))["bench_smoke"]
        return info["asset_sha256"] == asset_sha and sha256_file(path / WEIGHTS_FILE) == info["expanded_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _expand(asset_dir: Path, manifest: dict, out: Path) -> None:
    """Asset → open_clip local-dir (full-size token embedding, unused rows zero), atomically."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(asset_dir / ASSET_WEIGHTS))
    ids, rows = tensors.pop("token_embedding.ids"), tensors.pop("token_embedding.rows")
    vocab, width = manifest["model_cfg"]["text_cfg"]["vocab_size"], rows.shape[1]
    embedding = torch.zeros(vocab, width, dtype=rows.dtype)
    embedding[ids.long()] = rows
    tensors[EMBED_KEY] = embedding
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        os.chmod(tmp / WEIGHTS_FILE, 0o644)  # safetensors writes 0600; a shared cache must be readable
        info = {"asset_sha256": manifest["weights_sha256"], "expanded_sha256": sha256_file(tmp / WEIGHTS_FILE),
                "build": manifest.get("build", {})}
        config = {"model_cfg": manifest["model_cfg"], "preprocess_cfg": manifest["preprocess_cfg"],
                  "bench_smoke": info}  # open_clip ignores extra keys
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
        if out.exists():  # an older expansion: move it aside, then put the new one in place
            trash = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("smoke backbone expanded at %s", out)


def register_smoke_config() -> str:
    """Make SMOKE_MODEL_NAME a known open_clip architecture (open_clip reads configs from json files)."""
    if SMOKE_MODEL_NAME not in open_clip.list_models():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{SMOKE_MODEL_NAME}.json"
            path.write_text(json.dumps(MODEL_CFG), encoding="utf-8")
            open_clip.add_model_config(path)  # read now; the registry keeps the entry after the file goes
    return SMOKE_MODEL_NAME


# ---------------------------------------------------------------- building (scripts/build_smoke_backbone.py)
def recipe_fingerprint() -> str:
    """A short hash of everything the build depends on (a shipped asset records the one it was made with)."""
    recipe = repr((BUILD_VERSION, MODEL_CFG, LOGIT_SCALE, STYLE_CAPTIONS, PAIR_TEMPLATES, NOISE_TEMPLATES, NOISE_STD,
                   POOL_SIZE, CROP_SHARE, CROP_SCALE, COLOUR_TEMPLATES, CAPTION_MIX, PRETRAIN_MIX, MEAN, STD, BATCH,
                   LR, sorted(COLOURS.items()), SHAPES))
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def build_smoke_backbone(out: Path = ASSET_DIR, steps: int = DEFAULT_STEPS, seed: int = 0,
                         pool: int | None = None) -> dict:
    """Pre-train the tiny CLIP and write the asset (manifest + compact fp16 weights) into `out`.
    Returns the manifest. Deterministic: the same recipe, steps, seed and pool give the same bytes."""
    model, info = pretrain(steps=steps, seed=seed, pool=pool)
    return save_asset(model, Path(out), {**info, "seed": seed, "recipe": recipe_fingerprint(),
                                         "version": BUILD_VERSION})


def save_asset(model: torch.nn.Module, out: Path, build: dict) -> dict:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    embedding = state.pop(EMBED_KEY)
    ids = _vocabulary(open_clip.get_tokenizer(register_smoke_config()))
    tensors = {k: v.to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in state.items()}
    tensors["token_embedding.ids"] = ids.to(torch.int32)
    tensors["token_embedding.rows"] = embedding[ids].to(torch.float16).contiguous()
    out.mkdir(parents=True, exist_ok=True)
    weights = out / ASSET_WEIGHTS
    tmp = weights.with_name(f".{weights.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, weights)
    manifest = {"name": SMOKE_MODEL_NAME, "weights_file": ASSET_WEIGHTS, "weights_sha256": sha256_file(weights),
                "model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG, "build": build,
                "rebuild": f"{REBUILD} (BUILD_VERSION {BUILD_VERSION}, steps {build.get('steps')}, "
                           f"seed {build.get('seed')}; same torch build → same bytes)"}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _vocabulary(tokenizer) -> torch.Tensor:
    """Token ids the model was trained on (every pre-training caption): the rows worth shipping."""
    return torch.unique(_caption_table(tokenizer)[0])


def _pretrain_pool(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n rendered images (uint8 N×3×POOL_SIZE×POOL_SIZE) and their (colour, shape, caption style) indices."""
    colours = sorted(COLOURS)
    images = np.empty((n, POOL_SIZE, POOL_SIZE, 3), np.uint8)
    attrs = torch.empty(n, 3, dtype=torch.long)
    for i in range(n):
        rng = random.Random(f"pretrain/{seed}/{i}")
        c, s = rng.randrange(len(colours)), rng.randrange(len(SHAPES))
        _, style, caption_style = rng.choices(PRETRAIN_MIX, [entry[0] for entry in PRETRAIN_MIX])[0]
        images[i] = np.asarray(render(rng, colours[c], SHAPES[s], style, POOL_SIZE))
        attrs[i] = torch.tensor([c, s, caption_style])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), attrs


def _caption_table(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Every caption used in pre-training, tokenised once, with the (colour, shape, style) it names
    (colour or shape -1: any; style 0: plain)."""
    texts, attrs, templates = [], [], PAIR_TEMPLATES + NOISE_TEMPLATES
    for c, colour in enumerate(sorted(COLOURS)):
        for s, shape in enumerate(SHAPES):
            texts += [t.format(f"{colour} {shape}") for t in templates]
            attrs += [(c, s, 0)] * len(templates)
            for style, styled in STYLE_CAPTIONS.items():
                texts += [t.format(f"{colour} {shape}") for t in styled]
                attrs += [(c, s, style)] * len(styled)
        texts += [t.format(colour) for t in COLOUR_TEMPLATES]
        attrs += [(c, -1, 0)] * len(COLOUR_TEMPLATES)
    for s, shape in enumerate(SHAPES):
        texts += [t.format(shape) for t in templates]
        attrs += [(-1, s, 0)] * len(templates)
    return tokenizer(texts), torch.tensor(attrs)


def _pick_captions(img_attrs: torch.Tensor, cap_attrs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """For each image a random caption that describes it: colour+shape, shape only or colour only (an
    image in a shifted style: always colour+shape, in its style's words)."""
    kind = torch.rand(len(img_attrs), generator=gen)
    pair, shape_only = CAPTION_MIX[0], CAPTION_MIX[0] + CAPTION_MIX[1]
    want, plain = img_attrs.clone(), img_attrs[:, 2] == 0
    want[plain & (kind >= shape_only), 1] = -1
    want[plain & (kind >= pair) & (kind < shape_only), 0] = -1
    match = (cap_attrs[None, :, :] == want[:, None, :]).all(-1).float()  # B × captions
    return torch.multinomial(match, 1, generator=gen).squeeze(1)


def _contrastive_loss(img, txt, scale, img_attrs, cap_attrs) -> torch.Tensor:
    """CLIP's InfoNCE, but every caption that truly describes an image counts as a positive: with only
    96 (colour, shape) pairs a batch repeats captions, and calling those repeats negatives is wrong. A
    caption's style must be the image's (a plain caption does not describe a tinted image)."""
    agree = (cap_attrs[None, :, :] == img_attrs[:, None, :]) | (cap_attrs[None, :, :] < 0)
    target = agree.all(-1).float()
    logits = scale * img @ txt.t()
    loss_i = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    loss_t = -(target.t() / target.t().sum(1, keepdim=True) * logits.t().log_softmax(1)).sum(1).mean()
    return (loss_i + loss_t) / 2


def default_pool(steps: int) -> int:
    """Rendering costs ~0.5 ms an image: 8 fresh images per step, capped (later steps revisit)."""
    return max(2048, min(24000, 8 * steps))


def pretrain(steps: int = DEFAULT_STEPS, seed: int = 0, batch: int = BATCH, lr: float = LR, pool: int | None = None):
    """Train the tiny CLIP from scratch; deterministic for a given seed and torch build."""
    threads = torch.get_num_threads()
    # One thread: results then do not depend on the machine's thread count (reductions split
    # differently), and on a shared CPU two OpenMP threads can be many times slower than one.
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        register_smoke_config()
        model = open_clip.create_model(SMOKE_MODEL_NAME, device="cpu")
        with torch.no_grad():
            model.logit_scale.fill_(math.log(LOGIT_SCALE))
        model.logit_scale.requires_grad_(False)
        images, img_attrs = _pretrain_pool(pool or default_pool(steps), seed)
        tokenizer = open_clip.get_tokenizer(SMOKE_MODEL_NAME)
        captions, cap_attrs = _caption_table(tokenizer)
        noise_id = int(tokenizer([NOISE_TOKEN])[0, 1])
        losses = _train_loop(model, images, img_attrs, captions, cap_attrs, steps, batch, lr, seed, noise_id)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model, {"steps": steps, "batch": batch, "lr": lr, "pool": len(images), "torch": torch.__version__,
                   "loss_first": round(losses[0], 4), "loss_last": round(float(np.mean(losses[-20:])), 4)}


def _train_loop(model, images, img_attrs, captions, cap_attrs, steps, batch, lr, seed, noise_id) -> list[float]:
    # Speed-ups that leave the result a plain CLIP: captions use ~70 of 49408 tokens, so only those
    # embedding rows are trained (a dense 3.2M-row AdamW update would dominate each step), and captions
    # are cut after the longest EOT (with a causal mask, later positions never affect the EOT feature).
    used = torch.unique(captions)  # ascending, so the remap keeps EOT the largest id (argmax pooling)
    emb = torch.nn.Embedding.from_pretrained(model.token_embedding.weight[used].clone(), freeze=False)
    tokens = torch.searchsorted(used, captions)[:, : int((captions > 0).sum(1).max())]
    noise_token = int(torch.searchsorted(used, torch.tensor(noise_id)))
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
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=gen)
        cap = _pick_captions(img_attrs[idx], cap_attrs, gen)
        x = (_views(images[idx].float() / 255, gen) - mean) / std
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(_encode_text_short(model, emb, tokens[cap], noise_token, gen), dim=-1)
        loss = _contrastive_loss(img, txt, model.logit_scale.exp(), img_attrs[idx], cap_attrs[cap])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 500 == 0:
            log.info("pre-training step %d/%d: loss %.3f", step, steps, losses[-1])
    with torch.no_grad():
        model.token_embedding.weight.zero_()  # rows no caption uses stay zero (they are not shipped)
        model.token_embedding.weight[used] = emb.weight
    model.token_embedding.requires_grad_(True)
    model.logit_scale.requires_grad_(True)
    return losses


def _views(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Batched RandomResizedCrop (CROP_SHARE of the images; the rest whole) to IMAGE_SIZE + random flip."""
    from torchvision.ops import roi_align

    n, size = len(x), x.shape[-1]
    area = torch.empty(n).uniform_(*CROP_SCALE, generator=gen)
    area = torch.where(torch.rand(n, generator=gen) < CROP_SHARE, area, torch.ones(n))
    ratio = torch.exp(torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen))
    w = (size * torch.sqrt(area * ratio)).clamp(max=size)
    h = (size * torch.sqrt(area / ratio)).clamp(max=size)
    x0, y0 = torch.rand(n, generator=gen) * (size - w), torch.rand(n, generator=gen) * (size - h)
    boxes = torch.stack([torch.arange(n, dtype=torch.float32), x0, y0, x0 + w, y0 + h], 1)
    out = roi_align(x, boxes, output_size=IMAGE_SIZE, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def _encode_text_short(model, emb: torch.nn.Module, tokens: torch.Tensor, noise_token: int,
                       gen: torch.Generator) -> torch.Tensor:
    """open_clip's CLIP.encode_text on a truncated sequence (same EOT features, fewer positions), with
    every noise token's embedding replaced by fresh Gaussian noise."""
    n = tokens.shape[1]
    x = emb(tokens)
    noisy = tokens == noise_token
    x = torch.where(noisy[..., None], torch.randn(x.shape, generator=gen) * NOISE_STD, x)
    x = x + model.positional_embedding[:n]
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
