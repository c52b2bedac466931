"""Zero-shot CLIP (Radford et al. 2021): classify by cosine similarity to the embedding of one prompt
per class, with the per-dataset template of the CoOp protocol. Nothing is trained."""

from dataclasses import dataclass, field

from bench.method import Fitted, Method
from bench.registry import register_method


@dataclass(frozen=True)
class ZeroShotParams:
    templates: tuple[str, ...] = field(default=(), metadata={"help": "prompt templates to average; empty = the dataset card's"})


@register_method
class ZeroShot(Method):
    name = "zeroshot"
    version = 1
    inputs = "features"
    uses_fewshot = False  # fit() never reads the few-shot split: one run per dataset serves every shot count
    precision = "fp16"  # CoOp's ZeroshotCLIP runs CLIP as loaded: its fp16 model
    Params = ZeroShotParams

    def fit(self, task, params: ZeroShotParams) -> Fitted:
        def classifier(target):  # the same recipe for any class list (other protocols: for_classes)
            text, scale = target.text_features(params.templates or target.templates), target.logit_scale

            def predict(image_features):
                import torch.nn.functional as F

                return scale * F.normalize(image_features.float(), dim=-1) @ text.t()

            return predict

        return Fitted(predict=classifier(task), for_classes=classifier,
                      config={"templates": list(params.templates or task.templates)})
