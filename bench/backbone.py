"""Backbone loading through open_clip: a model name + pretrained tag (or checkpoint file), an open_clip
local-dir, or the project's own smoke model. The frozen model is returned with everything the engine
needs to know about it (image size, normalisation, activation, a digest of its weights)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

from bench import progress
from bench.config import BackboneSpec
from bench.errors import BenchError

log = logging.getLogger(__name__)


@dataclass
class Backbone:
    spec: BackboneSpec
    model: torch.nn.Module  # open_clip CLIP, eval mode, every parameter frozen
    tokenizer: object
    image_size: int
    mean: tuple
    std: tuple
    quick_gelu: bool
    digest: str  # sha256 over the weights: part of every cache key

    def describe(self) -> dict:
        """The resolved backbone record written into every result."""
        return {**self.spec.identity(), "quick_gelu": self.quick_gelu, "image_size": self.image_size,
                "mean": list(self.mean), "std": list(self.std), "weights_sha256": self.digest}


def load_backbone(spec: BackboneSpec, device: str | torch.device = "cpu") -> Backbone:
    """Progress (bench.progress): one step "loading backbone NAME"."""
    with progress.step(f"loading backbone {spec.name}"):
        return _load(spec, device)


def _load(spec: BackboneSpec, device) -> Backbone:
    model_name, pretrained, force_quick_gelu = _resolve(spec)
    try:
        model = open_clip.create_model(model_name, pretrained=pretrained or None,
                                       force_quick_gelu=force_quick_gelu, device=device)
    except RuntimeError as exc:
        if "download" in str(exc).lower() or "not a known tag" in str(exc):
            raise BenchError(_missing_weights_message(spec)) from None
        raise
    except FileNotFoundError as exc:
        raise BenchError(f"backbone '{spec.name}': {exc}") from None
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(model_name)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return Backbone(spec=spec, model=model, tokenizer=tokenizer, image_size=size,
                    mean=tuple(model.visual.image_mean), std=tuple(model.visual.image_std),
                    quick_gelu=uses_quick_gelu(model), digest=weights_digest(model))


def _resolve(spec: BackboneSpec) -> tuple[str, str, bool]:
    if spec.builtin:
        if spec.builtin != "smoke":
            raise BenchError(f"backbone '{spec.name}': unknown builtin '{spec.builtin}' (only 'smoke')")
        from bench.smoke_backbone import ensure_smoke_backbone, smoke_backbone_dir

        return f"local-dir:{ensure_smoke_backbone(smoke_backbone_dir())}", "", False
    if spec.local_dir:
        if not Path(spec.local_dir).expanduser().is_dir():
            raise BenchError(f"backbone '{spec.name}': local_dir {spec.local_dir} is not a directory")
        return f"local-dir:{Path(spec.local_dir).expanduser()}", "", False
    if spec.model not in open_clip.list_models():
        from bench.errors import unknown

        raise BenchError(f"backbone '{spec.name}': {unknown('open_clip model', spec.model, open_clip.list_models())}")
    # OpenAI's CLIP was trained with QuickGELU; open_clip's plain names use nn.GELU, which silently
    # changes every activation. Force it whatever name the user wrote.
    return spec.model, spec.pretrained, spec.pretrained == "openai"


def _missing_weights_message(spec: BackboneSpec) -> str:
    return (f"weights for {spec.model} '{spec.pretrained}' are not available offline: on a machine with "
            f"network run `python -c \"import open_clip; open_clip.create_model('{spec.model}', "
            f"pretrained='{spec.pretrained}')\"` to fill the Hugging Face cache (HF_HUB_CACHE), "
            f"or set pretrained = \"/path/to/weights.pt\" in tasks.toml")


def uses_quick_gelu(model: torch.nn.Module) -> bool:
    """True when every transformer MLP activation is QuickGELU (checked on the modules, not the name)."""
    acts = [m for m in model.modules() if type(m).__name__ in ("QuickGELU", "GELU")]
    return bool(acts) and all(type(m).__name__ == "QuickGELU" for m in acts)


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
