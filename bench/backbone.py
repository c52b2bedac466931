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


def load_backbone(spec: BackboneSpec, device: str | torch.device = "cpu", precision: str = "fp32") -> Backbone:
    """Progress (bench.progress): one step "loading backbone NAME". precision "fp16" builds CLIP's own
    fp16 model (open_clip's precision "fp16", i.e. OpenAI's convert_weights: conv, linear and attention
    weights in fp16, LayerNorm in fp32), which is what CoOp runs; "fp32" (and "amp") the fp32 model."""
    with progress.step(f"loading backbone {spec.name}" + (" (fp16)" if precision == "fp16" else "")):
        return _load(spec, device, "fp16" if precision == "fp16" else "fp32")


def _load(spec: BackboneSpec, device, precision: str = "fp32") -> Backbone:
    check_backbone(spec)  # also run by the driver's preflight; here for inline runs and notebooks
    model_name, pretrained, force_quick_gelu = _resolve(spec)
    try:
        model = open_clip.create_model(model_name, pretrained=pretrained or None, precision=precision,
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
    if spec.builtin:  # the config allows only "smoke"
        from bench.smoke_backbone import ensure_smoke_backbone, smoke_backbone_dir

        return f"local-dir:{ensure_smoke_backbone(smoke_backbone_dir())}", "", False
    if spec.local_dir:
        return f"local-dir:{Path(spec.local_dir).expanduser()}", "", False
    # OpenAI's CLIP was trained with QuickGELU; open_clip's plain names use nn.GELU, which silently
    # changes every activation. Force it whatever name the user wrote.
    return spec.model, spec.pretrained, spec.pretrained == "openai"


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def check_backbone(spec: BackboneSpec) -> None:
    """What can be checked without loading the weights, so that a typo stops the run before its first
    job (the driver's preflight calls this) instead of failing every job: the model name, the
    pretrained tag or checkpoint file (exists, has a checkpoint's header), a local_dir's config and
    weights, and whether a tag's weights are in the offline cache."""
    where = f"backbone '{spec.name}'"
    if spec.local_dir:
        return _check_local_dir(Path(spec.local_dir).expanduser(), where)
    if spec.builtin:
        return
    if spec.model not in open_clip.list_models():
        from bench.errors import unknown

        raise BenchError(f"{where}: {unknown('open_clip model', spec.model, open_clip.list_models())}")
    if not spec.pretrained:
        return  # random weights, on purpose (timing runs)
    tags = open_clip.list_pretrained_tags_by_model(spec.model)
    if spec.pretrained in tags:
        return _check_cached(spec, where)
    path = Path(spec.pretrained).expanduser()
    if not path.exists():
        from bench.errors import did_you_mean

        raise BenchError(f"{where}: pretrained '{spec.pretrained}' is neither a checkpoint file nor a tag of "
                         f"{spec.model}{did_you_mean(spec.pretrained, tags)}")
    _check_weights_file(path, where)


def _check_local_dir(folder: Path, where: str) -> None:
    import json

    config = folder / "open_clip_config.json"
    if not folder.is_dir():
        raise BenchError(f"{where}: local_dir {folder} is not a folder")
    try:
        ok = "model_cfg" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchError(f"{where}: local_dir {folder}: cannot read open_clip_config.json ({exc})") from None
    if not ok:
        raise BenchError(f"{where}: {config} has no 'model_cfg'; it is not an open_clip config")
    weights = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if not weights:  # open_clip would only log a warning and build a randomly initialised model
        raise BenchError(f"{where}: local_dir {folder} holds no weights file ({', '.join(WEIGHT_SUFFIXES)})")
    _check_weights_file(weights[0], where)


def _check_weights_file(path: Path, where: str) -> None:
    """A checkpoint's first bytes: a zip (torch.save, TorchScript), a pickle (legacy torch.save), or
    a safetensors header (8-byte length, then JSON)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError as exc:
        raise BenchError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or head[8:9] == b"{"):
        raise BenchError(f"{where}: {path} is not a checkpoint (expected a PyTorch or safetensors file)")


def _check_cached(spec: BackboneSpec, where: str) -> None:
    """Offline (HF_HUB_OFFLINE=1), a tag whose weights were never downloaded cannot load."""
    import os

    if os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes", "on"):
        return  # the worker downloads them
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import get_pretrained_cfg

    hub = get_pretrained_cfg(spec.model, spec.pretrained).get("hf_hub", "")
    model_id, filename = os.path.split(hub)
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if not any(isinstance(try_to_load_from_cache(model_id, name), str) for name in names):
        raise BenchError(f"{where}: {_missing_weights_message(spec)}")


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
