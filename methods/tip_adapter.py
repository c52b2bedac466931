"""Tip-Adapter and Tip-Adapter-F (Zhang et al., "Tip-Adapter: Training-free Adaption of CLIP for Few-shot
Classification", ECCV 2022), following the official code (github.com/gaopengcuhk/Tip-Adapter).

Cache model. Keys: for every few-shot train image, the mean of its raw (unnormalised) image embeddings
over `augment_views` augmented views, L2-normalised once after the mean (the official order: no
per-view normalisation). Values: the one-hot labels. For an L2-normalised test feature f:
    affinity A = exp(−β·(1 − f·Kᵀ)),   logits = s·f·Wᵀ + α·A·V
with W the zero-shot classifier (bench's, with the dataset card's templates) and s = exp(logit_scale),
which is the official constant 100 for OpenAI CLIP; with α = 0 the logits are zero-shot CLIP's exactly.

Views. The official cache and training loaders apply RandomResizedCrop(224, scale (0.5, 1), bicubic) +
horizontal flip: bench's augmented views with `aug_scale = (0.5, 1)`, read from the feature cache. The
only difference is where the randomness comes from: a view is seeded by (seed, epoch, item), not by a
loader's running generator. The cache uses views 0 … augment_views − 1; Tip-Adapter-F trains on the
next `epochs` views, so its training views are fresh draws, as the official per-epoch loader's are.

α/β search. The official grid: β_i = i·(beta_max − 0.1)/beta_steps + 0.1 for i < beta_steps (the end is
left out), α likewise, β outer and α inner, the first best kept (a strict '>'). The official code
searches on the full val split, and on ImageNet (no val split) on the test split. bench searches on
the few-shot val split (min(K, 4) per class; recorded `fewshot_val`) and, without a val split, on
bench.data.holdout_val, the linear probe's held-out draw of train images (`when_no_val`, same names
and regimes as methods/linear_probe.py; `"test"` is the official ImageNet behaviour, an oracle,
recorded `oracle_test`). The official per-dataset ranges (search_scale, init_alpha in configs/*.yaml)
are [[methods.tip_adapter.when]] entries in tasks.toml; the defaults here are its ImageNet/OxfordPets
config.

Tip-Adapter-F (`train_keys = true`, the `tip_adapter_f` variant in tasks.toml): the keys become the
weight of a bias-free linear layer initialised from the cache; AdamW (lr 1e-3, eps 1e-4, weight decay
left at AdamW's default 0.01), cosine annealing over all iterations (stepped per batch), batch 256
reshuffled every epoch, last partial batch kept, 20 epochs (EuroSAT 100, tasks.toml), cross-entropy on
the Tip-Adapter logits with α, β fixed at init_alpha, init_beta. Then α, β are searched as above with
the trained keys (not renormalised, as the official adapter). Deviation: the official code evaluates on
test after every epoch and keeps the best test epoch (and prints the better of that and the final
search); bench always uses the LAST epoch and never looks at test.

Precision (`precision = "fp16"`): the official code runs clip.load(...) on a GPU, CLIP's fp16 model, so
features, cache keys and the trained keys are fp16 (hence AdamW's eps 1e-4). Here the keys are stored
and trained in fp16 under the fp16 model (fp32 otherwise; "amp" keeps an fp32 master copy and scales
the loss); the cache-model arithmetic runs in fp32, as bench's zero-shot head does.
ImageNet: the official code ensembles 7 prompt templates there; bench uses the card's template(s)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.method import Fitted, Method, tensors_file
from bench.registry import register_method

NO_VAL_CHOICES = ("train_holdout", "test", "fixed")  # the linear probe's `when_no_val` choices
SEARCH_ROWS = 2048  # validation rows per chunk of the search: bounds the [rows, keys] affinity matrix
@dataclass(frozen=True)
class TipAdapterParams:
    augment_views: int = field(default=10, metadata={"help": "augmented views averaged into each cache key "
                                                             "(official augment_epoch)", "range": (1, None)})
    aug_scale: tuple = field(default=(0.5, 1.0), metadata={"help": "RandomResizedCrop scale range of the views "
                                                                   "(official: 0.5-1)", "range": (0.0, 1.0)})
    search: bool = field(default=True, metadata={"help": "search α, β on the validation split (else use "
                                                         "init_alpha, init_beta)"})
    beta_max: float = field(default=7.0, metadata={"help": "β grid end, left out (official search_scale[0])",
                                                   "range": (0.0, None), "open": True})
    alpha_max: float = field(default=3.0, metadata={"help": "α grid end, left out (official search_scale[1])",
                                                    "range": (0.0, None), "open": True})
    beta_steps: int = field(default=200, metadata={"help": "β grid points from 0.1 (official search_step[0])",
                                                   "range": (1, None)})
    alpha_steps: int = field(default=20, metadata={"help": "α grid points from 0.1 (official search_step[1])",
                                                   "range": (1, None)})
    init_beta: float = field(default=1.0, metadata={"help": "β while training keys, and when search = false",
                                                    "range": (0.0, None)})
    init_alpha: float = field(default=1.17, metadata={"help": "α while training keys, and when search = false "
                                                              "(0 = zero-shot CLIP)", "range": (0.0, None)})
    when_no_val: str = field(default="train_holdout", metadata={"choices": NO_VAL_CHOICES,
        "help": "datasets without a val split (ImageNet): 'train_holdout' searches α, β on min(K, 4) train "
                "images per class outside the K-shot draw (recorded fewshot_val); 'test' searches them on "
                "the test split as the official ImageNet script does (an oracle, recorded oracle_test); "
                "'fixed' uses init_alpha, init_beta"})
    train_keys: bool = field(default=False, metadata={
        "help": "Tip-Adapter-F: fine-tune the cache keys (a bias-free linear layer initialised from the "
                "cache) with AdamW, then search α, β; false = training-free Tip-Adapter"})
    epochs: int = field(default=20, metadata={"help": "train_keys: epochs (official train_epoch; EuroSAT 100); "
                                                      "the last epoch is used", "range": (1, None)})
    lr: float = field(default=1e-3, metadata={"help": "train_keys: AdamW learning rate, cosine over all steps",
                                              "range": (0.0, None)})
    eps: float = field(default=1e-4, metadata={"help": "train_keys: AdamW eps (official 1e-4: fp16 keys)",
                                               "range": (0.0, None), "open": True})
    weight_decay: float = field(default=0.01, metadata={"help": "train_keys: AdamW weight decay (official: "
                                                                "AdamW's default)", "range": (0.0, None)})
    batch_size: int = field(default=256, metadata={"help": "train_keys: views per step", "range": (1, None)})


def grid(end: float, steps: int) -> list[float]:
    """The official search grid: `steps` points from 0.1 towards `end`, the end itself left out."""
    return [i * (end - 0.1) / steps + 0.1 for i in range(steps)]


def tip_logits(feats, keys, values, text, scale: float, alpha: float, beta: float):
    """s·f·Wᵀ + α·exp(−β(1 − f·Kᵀ))·V for features `feats` [N, D] (normalised here), in fp32."""
    import torch.nn.functional as F

    f = F.normalize(feats.float(), dim=-1)
    clip = scale * f @ text.t()  # the very expression of Task.zero_shot_logits: α = 0 gives it bit for bit
    affinity = f @ keys.t().to(f.dtype)  # a cast, not a copy, keeps fp16 trained keys differentiable
    return clip + alpha * ((beta * affinity - beta).exp() @ values)  # βA − β: the official's −(β − βA)


def search_alpha_beta(feats, labels, keys, values, text, scale: float, betas, alphas):
    """(β, α, validation accuracy %) of the first best grid point in the official order (β outer, α
    inner, strict '>'). Correct predictions are counted for all α at once, chunk by chunk of rows.
    The official code starts from accuracy 0 and returns (0, 0) if nothing beats it; here the first grid
    point is the floor (only differs when every grid point scores 0 on val)."""
    import torch
    import torch.nn.functional as F

    f, labels = F.normalize(feats.float(), dim=-1), labels.to(feats.device)
    keys = keys.float()
    a = torch.tensor(alphas, dtype=torch.float32, device=f.device)[:, None, None]
    correct = torch.zeros(len(betas), len(alphas), dtype=torch.long, device=f.device)
    for start in range(0, len(f), SEARCH_ROWS):
        rows, y = f[start:start + SEARCH_ROWS], labels[start:start + SEARCH_ROWS]
        clip, affinity = scale * rows @ text.t(), rows @ keys.t()
        for i, beta in enumerate(betas):
            cache = (beta * affinity - beta).exp() @ values
            correct[i] += ((clip + a * cache).argmax(-1) == y).sum(-1)
    best = int(correct.flatten().argmax())  # torch returns the first maximum: the official tie rule
    i, j = divmod(best, len(alphas))
    return betas[i], alphas[j], 100.0 * int(correct[i, j]) / max(len(labels), 1)


def train_cache_keys(task, params: TipAdapterParams, keys, values, text, scale: float):
    """Tip-Adapter-F: (trained keys, mean loss per epoch). Epoch e trains on cached view
    augment_views + e of every few-shot image, normalised per view as the official training loop does."""
    import torch
    import torch.nn.functional as F

    from bench.train import autocast, grad_scaler, log_epoch

    dev = task.device
    weight = torch.nn.Parameter(keys.clone().to(dev))  # [NK, D] = the linear layer's weight; keys' dtype
    first = params.augment_views
    views = task.features.train_views(task.fewshot, task.seed, range(first, first + params.epochs),
                                      params.aug_scale)
    count = len(views[0][1])
    steps = math.ceil(count / params.batch_size)  # the official loader keeps the last partial batch
    opt = torch.optim.AdamW([weight], lr=params.lr, eps=params.eps, weight_decay=params.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, params.epochs * steps)
    scaler = grad_scaler(dev, task.precision)
    order = task.generator("tip_adapter", "batches")
    losses = []
    for epoch, (feats, labels) in enumerate(views):
        feats, labels = F.normalize(feats.to(dev), dim=-1), labels.to(dev)
        lr, total = schedule.get_last_lr()[0], torch.zeros((), device=dev)
        for idx in torch.randperm(count, generator=order).split(params.batch_size):
            idx = idx.to(dev)
            with autocast(dev, task.precision):
                logits = tip_logits(feats[idx], weight, values, text, scale, params.init_alpha, params.init_beta)
                loss = F.cross_entropy(logits.float(), labels[idx])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            schedule.step()
            total = total + loss.detach().float()
        losses.append(float(total) / steps)  # one sync per epoch
        log_epoch("tip_adapter_f", epoch, params.epochs, losses[-1], lr)
    return weight.detach(), losses


@register_method
class TipAdapter(Method):
    name = "tip_adapter"
    version = 1
    inputs = "features"
    # The official scripts run clip.load(...) on a GPU as loaded, i.e. CLIP's fp16 model: fp16 features,
    # fp16 cache and an fp16 trained adapter (Tip-Adapter-F's AdamW eps 1e-4 is there for fp16).
    precision = "fp16"
    Params = TipAdapterParams

    def fit(self, task, params: TipAdapterParams) -> Fitted:
        import torch
        import torch.nn.functional as F

        dev, text, scale = task.device, task.text_features(), task.logit_scale
        views = task.features.train_views(task.fewshot, task.seed, params.augment_views, params.aug_scale)
        labels = views[0][1]
        # CLIP's dtype for the cache, as the official one: fp16 under the fp16 model, fp32 otherwise
        dtype = torch.float16 if task.precision == "fp16" else torch.float32
        keys = F.normalize(torch.stack([v for v, _ in views]).mean(0), dim=-1).to(dev, dtype)
        values = F.one_hot(labels, task.num_classes).float().to(dev)
        losses, config = [], {"augment_views": params.augment_views, "keys": len(labels)}
        if params.train_keys:
            keys, losses = train_cache_keys(task, params, keys, values, text, scale)
            first = params.augment_views
            config.update(epochs=params.epochs, train_views=[first, first + params.epochs - 1])
        alpha, beta, val_acc = params.init_alpha, params.init_beta, None
        val, validation, val_info = task.search_features(params.search, params.when_no_val, "init_alpha, init_beta")
        if val is not None:
            xv, yv = (t.to(dev) for t in val)
            beta, alpha, val_acc = search_alpha_beta(xv, yv, keys, values, text, scale,
                                                     grid(params.beta_max, params.beta_steps),
                                                     grid(params.alpha_max, params.alpha_steps))

        def predict(image_features):
            return tip_logits(image_features.to(dev), keys, values, text, scale, alpha, beta)

        metrics = {"alpha": alpha, "beta": beta}
        if val_acc is not None:
            metrics["val_accuracy"] = val_acc
        if losses:
            metrics["train_loss_last_epoch"] = losses[-1]
        # what reproduces predictions: the keys (trained ones for -F) and the labels the one-hot values
        # come from; α, β are in the record
        state = keys.numel() * keys.element_size() + labels.numel() * labels.element_size()
        return Fitted(predict=predict, trainable_params=keys.numel() if params.train_keys else 0,
                      no_transfer="the cache's values are one-hot labels of the training classes",
                      state_bytes=state, metrics=metrics, validation=validation,
                      # training-free keys are rebuilt from the feature cache; trained ones are saved
                      artifacts={"cache.safetensors": tensors_file({"keys": keys, "labels": labels})}
                      if params.train_keys else {},
                      config={**config, "alpha": alpha, "beta": beta, **val_info})
