"""Binary masks on the weights of a frozen open_clip image encoder (mask tuning, Zhao et al. 2020; RMT).

Each masked weight W gets a real-valued fp32 score tensor S; the forward pass uses W ⊙ 1[S > τ] and the
backward pass is straight-through: ∂L/∂S = (∂L/∂W′) ⊙ W. The frozen model is never modified and never
copied: `torch.func.functional_call` swaps the masked tensors in for one call only (and swaps them back
even if the call raises), so one shared encoder serves every job. The masked tensors themselves are
rebuilt at each call from W (kept by reference) and the mask, so memory holds W plus one transient
masked copy of the masked tensors, never a second encoder.

Targets (`mask_targets`): "rmt" (the default) is the set R-AMT's code masks on the encoder's
architecture: "attn" on a ViT, "all_conv_attnpool" on a ModifiedResNet. On a ViT, "attn" = every selected
block's attn.in_proj_weight and attn.out_proj.weight plus conv1.weight, "mlp" = the blocks' mlp.c_fc/c_proj
weights, "all_linear" = attention and MLP weights of the blocks (Zhao et al.; no conv1). On a
ModifiedResNet, "all_conv_attnpool" = the three stem convolutions, every convolution of the selected
bottlenecks (conv1, conv2, conv3 and downsample.0) and the attention pool's q/k/v/c projections (R-AMT's
MaskModifiedResNet makes each of these an element-wise masked layer: 59 tensors on RN50),
"conv1_attnpool" = the first stem convolution plus the attention-pool projections, "conv" = the
selected bottlenecks' convolutions.
A weight is switched off where its score is ≤ τ (the forward keeps s > τ, as R-AMT's Binarizer); the
masked percentage counts those. R-AMT's own sparsity printout counts s < τ: the two differ only for
scores exactly equal to τ.
Saved masks are packed bits (numpy.packbits) in an .npz: 28.9M entries ≈ 3.6 MB for ViT-B/16.
numpy, torch and open_clip are imported inside the functions: method files import this module, and
the CLI lists and validates their parameters without paying for torch.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import BenchError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
VIT_TARGETS = {"attn": ("attn.in_proj_weight", "attn.out_proj.weight"),
               "mlp": ("mlp.c_fc.weight", "mlp.c_proj.weight"),
               "all_linear": ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")}
RESNET_TARGETS = ("all_conv_attnpool", "conv1_attnpool", "conv")
RMT_TARGETS = "rmt"  # R-AMT's set for the architecture (resolve_targets)
MASKS_ARTIFACT = "masks.npz"  # the artifact of a method with `produces_masks = True` (bench.method)
POOL_WEIGHTS = tuple(f"attnpool.{p}_proj.weight" for p in "qkvc")


def _block_range(count: int, first: int, last: int) -> range:
    """Blocks first..last inclusive (last = -1: the last block); a last beyond the model is clamped so
    one variant (e.g. Zhao's blocks 2-11) runs on deeper and shallower encoders alike."""
    last = count - 1 if last < 0 or last >= count else last
    if not 0 <= first <= last:
        raise BenchError(f"mask blocks {first}..{last} select nothing in an encoder with {count} blocks; "
                         f"set first_block between 0 and {count - 1}")
    return range(first, last + 1)


def resolve_targets(visual: torch.nn.Module, targets: str) -> str:
    """The named set `targets` stands for: "rmt" → R-AMT's set for this architecture, others as given."""
    from open_clip.modified_resnet import ModifiedResNet

    if targets != RMT_TARGETS:
        return targets
    return "all_conv_attnpool" if isinstance(visual, ModifiedResNet) else "attn"


def mask_targets(visual: torch.nn.Module, targets: str = RMT_TARGETS, first_block: int = 0,
                 last_block: int = -1) -> list[str]:
    """Names (relative to `visual`) of the weights to mask, in parameter order. Which `targets` exist
    depends on the encoder's architecture, so that check stays here (the parameter declares them all)."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    targets = resolve_targets(visual, targets)
    if isinstance(visual, VisionTransformer):
        if targets not in VIT_TARGETS:
            raise BenchError(f"unknown mask targets '{targets}' for a ViT (choose from: {', '.join(VIT_TARGETS)})")
        blocks = _block_range(len(visual.transformer.resblocks), first_block, last_block)
        names = ["conv1.weight"] if targets == "attn" else []
        names += [f"transformer.resblocks.{b}.{leaf}" for b in blocks for leaf in VIT_TARGETS[targets]]
    elif isinstance(visual, ModifiedResNet):
        if targets not in RESNET_TARGETS:
            raise BenchError(f"unknown mask targets '{targets}' for a ModifiedResNet "
                             f"(choose from: {', '.join(RESNET_TARGETS)})")
        bottlenecks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(len(getattr(visual, f"layer{i}")))]
        chosen = [bottlenecks[b] for b in _block_range(len(bottlenecks), first_block, last_block)]
        convs = [n for n, p in visual.named_parameters()
                 if p.ndim == 4 and any(n.startswith(f"{b}.") for b in chosen)]
        stem = ["conv1.weight", "conv2.weight", "conv3.weight"]
        names = {"all_conv_attnpool": stem + convs + list(POOL_WEIGHTS),
                 "conv1_attnpool": ["conv1.weight", *POOL_WEIGHTS], "conv": convs}[targets]
    else:
        raise BenchError(f"masking supports open_clip VisionTransformer and ModifiedResNet image encoders, "
                         f"not {type(visual).__name__}")
    order = {n: i for i, (n, _) in enumerate(visual.named_parameters())}
    return sorted(set(names), key=order.__getitem__)


@functools.lru_cache(maxsize=1)
def _straight_through():
    """The autograd.Function W ⊙ 1[S > τ] forward; the gradient reaches S as if the mask were W-scaled
    identity. Defined on first use: a torch subclass at module level would import torch with the module."""
    import torch

    class StraightThrough(torch.autograd.Function):
        @staticmethod
        def forward(ctx, weight, scores, threshold):
            ctx.save_for_backward(weight)  # a reference to the frozen tensor, not a copy
            return weight * (scores > threshold).to(weight.dtype)

        @staticmethod
        def backward(ctx, grad):
            (weight,) = ctx.saved_tensors
            return None, (grad * weight).float(), None

    return StraightThrough


class MaskScores:
    """The trainable state of mask tuning: one fp32 score tensor per masked weight of `visual`."""

    def __init__(self, visual, names, threshold: float, init: str = "constant", value: float = 1e-2,
                 sparsity: float = 0.05, generator: torch.Generator | None = None):
        params = dict(visual.named_parameters())
        self.visual, self.names, self.threshold = visual, list(names), float(threshold)
        self.frozen = [params[n] for n in self.names]
        self.scores = [self._init(p, init, value, sparsity, generator) for p in self.frozen]

    def _init(self, weight, init, value, sparsity, generator):
        """init ∈ {constant, uniform} and 0 < sparsity < 1 are checked where the parameters are read
        (MaskTuningParams declares them); an unknown init here is a programming error (KeyError)."""
        import torch

        make = {"constant": lambda: torch.full(weight.shape, float(value)),
                # U(0, τ/p): a fraction p of the scores starts at or below τ, i.e. masked
                "uniform": lambda: torch.rand(weight.shape, generator=generator) * (self.threshold / sparsity)}
        return make[init]().to(weight.device).requires_grad_(True)

    def weights(self) -> dict[str, torch.Tensor]:
        """Masked weights whose gradient flows straight through to the scores (for training)."""
        mask = _straight_through().apply
        return {n: mask(w, s, self.threshold) for n, w, s in zip(self.names, self.frozen, self.scores)}

    def l2(self) -> torch.Tensor:
        """Σ_t ‖S_t‖₂: the plain L2 norm of each score tensor, summed."""
        return sum(s.norm() for s in self.scores)

    def binary(self) -> dict[str, torch.Tensor]:
        return {n: (s.detach() > self.threshold) for n, s in zip(self.names, self.scores)}


def apply_masks(visual, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masked copies of the masked weights only (for inference with binary masks)."""
    params = dict(visual.named_parameters())
    return {n: params[n] * m.to(params[n].device, params[n].dtype) for n, m in masks.items()}


def encode(visual, weights: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The encoder's output with `weights` swapped in for this call only."""
    from torch.func import functional_call

    return functional_call(visual, weights, (images,), tie_weights=False, strict=False)


def class_logits(features: torch.Tensor, text: torch.Tensor, scale: float) -> torch.Tensor:
    """CLIP's classifier: logit_scale · norm(image) @ textᵀ, in fp32."""
    import torch.nn.functional as F

    return scale * F.normalize(features.float(), dim=-1) @ text.t()


def masked_predictor(task, masks: dict[str, torch.Tensor]):
    """predict(images) → logits of the shared encoder under binary `masks` (moved to the task device)."""
    visual, text, scale = task.backbone.model.visual, task.text_features(), task.logit_scale
    masks = {n: m.to(task.device) for n, m in masks.items()}
    _check_masks(visual, masks)

    def predict(images):
        return class_logits(encode(visual, apply_masks(visual, masks), images), text, scale)

    return predict


def masked_model(model, masks: dict[str, torch.Tensor]):
    """A CLIP whose image encoder is a masked copy of `model.visual` (W ⊙ mask, masks moved to its
    device and dtype); the text tower and every other module are `model`'s own, shared, and `model`
    itself is left untouched. For a feature method composed on a mask method's masks (bench.runner)."""
    import copy

    import torch

    _check_masks(model.visual, masks)
    visual = copy.deepcopy(model.visual)
    params = dict(visual.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name].device, params[name].dtype))  # × 0/1: exact
    clone = copy.copy(model)  # shallow: shares every submodule and parameter dict...
    clone._modules = {**model._modules, "visual": visual}  # ...but its own module table
    return clone


def _check_masks(visual, masks) -> None:
    params = dict(visual.named_parameters())
    for name, mask in masks.items():
        if name not in params or tuple(params[name].shape) != tuple(mask.shape):
            raise BenchError(f"saved mask '{name}' {tuple(mask.shape)} does not fit this backbone's image "
                             f"encoder: load masks with the backbone they were trained on")


def mask_metrics(masks: dict[str, torch.Tensor], model) -> dict:
    """Masked percentage over the masked tensors (RMT's definition), the image encoder and all of CLIP.
    A masked entry is one the mask switches off (score ≤ τ); R-AMT's printout counts score < τ, which
    differs only for scores exactly at τ (module docstring)."""
    entries = sum(m.numel() for m in masks.values())
    count = sum(int((~m.bool()).sum()) for m in masks.values())
    encoder = sum(p.numel() for p in model.visual.parameters())
    clip = sum(p.numel() for p in model.parameters())
    return {"masked_pct_of_masked_tensors": 100.0 * count / max(entries, 1),
            "masked_pct_of_image_encoder": 100.0 * count / encoder,
            "masked_pct_of_clip": 100.0 * count / clip,
            "masked_entries": entries, "masked_count": count}


def packed_bytes(masks: dict[str, torch.Tensor]) -> int:
    return sum(math.ceil(m.numel() / 8) for m in masks.values())


def pack_masks(masks: dict[str, torch.Tensor], threshold: float, meta: dict | None = None) -> bytes:
    """An .npz: bits_i = numpy.packbits of mask i (flattened, 1 = kept), shape_i, names, τ, meta JSON."""
    import numpy as np

    arrays = {"names": np.array(list(masks), dtype=np.str_), "threshold": np.array(float(threshold)),
              "meta": np.array(json.dumps(meta or {}, sort_keys=True))}
    for i, mask in enumerate(masks.values()):
        arrays[f"bits_{i}"] = np.packbits(mask.detach().bool().cpu().numpy().reshape(-1))
        arrays[f"shape_{i}"] = np.array(mask.shape, dtype=np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # mostly-on masks compress well; content stays packed bits
    return buffer.getvalue()


def read_masks(path) -> tuple[dict[str, torch.Tensor], dict]:
    """(masks, info) from a file written by pack_masks; info has threshold and the training meta."""
    import numpy as np
    import torch

    try:
        with np.load(Path(path), allow_pickle=False) as data:
            masks = {}
            for i, name in enumerate(data["names"].tolist()):
                shape = tuple(int(d) for d in data[f"shape_{i}"])
                bits = np.unpackbits(data[f"bits_{i}"], count=math.prod(shape))
                masks[name] = torch.from_numpy(bits.reshape(shape).astype(bool))
            info = {"threshold": float(data["threshold"]), "meta": json.loads(str(data["meta"]))}
    except (OSError, KeyError, ValueError) as exc:
        raise BenchError(f"{path} is not a readable masks file ({exc}); point to a masks.npz artifact") from None
    return masks, info


def load_masks(path) -> dict[str, torch.Tensor]:
    """name → BoolTensor (True = weight kept) from a saved masks.npz."""
    return read_masks(path)[0]


def evaluate_saved_masks(task, path) -> float:
    """Top-1 on the task's full test split with masks loaded from `path`, without retraining."""
    from bench.method import Fitted
    from bench.runner import evaluate

    return evaluate(Fitted(predict=masked_predictor(task, load_masks(path))), "images", task)
