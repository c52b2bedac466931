"""CoOp (Zhou et al., IJCV 2022, "Learning to Prompt for Vision-Language Models"): learn the context
words of the prompt as continuous vectors; the whole CLIP stays frozen.

Prompt of class i: [SOT] ctx_1 … ctx_M name_i . [EOT] (class token at the end; also "middle" and
"front"), fed to CLIP's text tower as token embeddings. The image side never changes, so training reads
the cached augmented view (seed, epoch, item) of every few-shot image instead of running the image
encoder (bench.features): same views as on the fly, a fraction of the cost.
Exact speed-up: the text tower's causal mask means positions after the last EOT never influence the
EOT feature, so prompts are cut to the longest EOT + 1 tokens (77 → ~20 for most datasets).

As CoOp's code: a random context is N(0, init_std²), one [n_ctx, dim] draw shared by all classes, or with
`csc` an independent [n_cls, n_ctx, dim] draw (every class its own). A phrase (`ctx_init`) sets n_ctx to
its number of space-separated words, not BPE tokens, and the context to the token embeddings of the
first n_ctx tokens after SOT: "itap of a" is 3 words but 4 tokens ("it", "ap", "of", "a"), so the
context is (it, ap, of) and "a" stays a fixed token before the class name. With `csc` every class
starts from the phrase (CoOp's code keeps one shared context there, ignoring CSC).
Precision (`precision = "fp16"`): CoOp's default PREC runs CLIP's fp16 model and keeps the context in
CLIP's dtype, stepped by plain SGD without loss scaling; the context here lives in the text tower's
dtype (fp16 under the fp16 model, fp32 otherwise, so "amp" keeps an fp32 master copy)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.errors import BenchError
from bench.method import Fitted, Method, tensors_file
from bench.registry import register_method
from bench.train import SGDParams, autocast, coop_epochs, train_on_views

POSITIONS = ("end", "middle", "front")


@dataclass(frozen=True)
class CoOpParams(SGDParams):  # + CoOp's optimiser, schedule and aug_scale (bench.train.SGDParams)
    n_ctx: int = field(default=16, metadata={"help": "number of context vectors (ignored with ctx_init)",
                                             "range": (1, None)})
    ctx_init: str = field(default="", metadata={"help": "initialise from a phrase, e.g. 'a photo of a' "
                                                       "(n_ctx = its word count, as CoOp); "
                                                       "empty = N(0, init_std²)"})
    init_std: float = field(default=0.02, metadata={"help": "std of the random context init", "range": (0.0, None)})
    class_token_position: str = field(default="end", metadata={"help": "where the class name goes in the prompt",
                                                               "choices": POSITIONS})
    csc: bool = field(default=False, metadata={"help": "class-specific context (one independent draw per "
                                                       "class; with ctx_init each starts from the phrase, "
                                                       "where CoOp's code silently drops CSC)"})
    epochs: int = field(default=0, metadata={"help": "0 = CoOp's rule: 1 shot 50, 2/4 shots 100, "
                                                     "8/16 shots 200; ImageNet 50", "range": (0, None)})


def text_tower(model):
    """open_clip's CLIP keeps the text tower on the model; CustomTextCLIP under `.text`."""
    tower = getattr(model, "text", model)
    if getattr(tower, "text_pool_type", "argmax") != "argmax" or getattr(tower, "cls_emb", None) is not None:
        raise BenchError("CoOp needs a CLIP-style text tower pooled at the EOT token (argmax pooling)")
    return tower


def encode_token_embeddings(tower, x, eot):
    """open_clip CLIP.encode_text from token embeddings x [C, L, W] (L ≤ context length): + positional
    → transformer with the causal mask → ln_final → feature at the EOT position → text projection."""
    import torch

    n = x.shape[1]
    cast = tower.transformer.get_cast_dtype()
    x = x.to(cast) + tower.positional_embedding[:n].to(cast)
    mask = tower.attn_mask[:n, :n] if tower.attn_mask is not None else None
    x = tower.ln_final(tower.transformer(x, attn_mask=mask))
    x = x[torch.arange(len(x), device=x.device), eot]
    proj = tower.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


class PromptLearner:
    """Learnable context + the frozen token embeddings of every class's prompt, assembled by indexing.
    A plain object holding tensors (not an nn.Module, so this file imports without torch): `ctx` is
    the one Parameter; `fixed`, `eot` and `slot` are constants."""

    def __init__(self, tower, tokenizer, classnames, params: CoOpParams, generator):
        import torch

        embed = tower.token_embedding
        with torch.no_grad():
            ctx, prefix = self._init_ctx(embed, tokenizer, params, len(classnames), generator)
            tokens = tokenizer([f"{prefix} {name}." for name in classnames]).to(embed.weight.device)
            names = tokenizer(list(classnames)).argmax(-1) - 1  # BPE tokens of each class name
            eot = tokens.argmax(-1)  # EOT has the largest id in CLIP's vocabulary
            length = int(eot.max()) + 1 if tower.attn_mask is not None else tokens.shape[1]
            src, slot = _layout(len(ctx) if not params.csc else ctx.shape[1], names, length,
                                params.class_token_position)
            base = embed(tokens[:, :length]).float()
            src = src.to(base.device)[..., None].expand(-1, -1, base.shape[-1])
            self.fixed = base.gather(1, src)
        self.eot = eot
        self.slot = slot  # position → context index, -1 where the token is fixed
        # CLIP's dtype, as CoOp's context: fp16 under the fp16 model, fp32 otherwise
        self.ctx = torch.nn.Parameter(ctx.to(tower.transformer.get_cast_dtype()))
        self.csc = params.csc

    def to(self, device) -> "PromptLearner":
        import torch

        self.fixed, self.eot, self.slot = (t.to(device) for t in (self.fixed, self.eot, self.slot))
        self.ctx = torch.nn.Parameter(self.ctx.detach().to(device))  # still a leaf: made before the optimiser
        return self

    @staticmethod
    def _init_ctx(embed, tokenizer, params: CoOpParams, n_cls: int, generator):
        """(context [n_ctx, W], or [n_cls, n_ctx, W] with csc; the prompt prefix that stands for it)."""
        import torch

        if params.ctx_init:
            phrase = params.ctx_init.replace("_", " ")
            n_ctx = len(phrase.split(" "))  # CoOp: words, not BPE tokens (module docstring)
            tokens = tokenizer([phrase]).to(embed.weight.device)
            ctx = embed(tokens)[0, 1:1 + n_ctx].float().cpu()
            return (ctx.expand(n_cls, -1, -1).clone() if params.csc else ctx), phrase
        shape = (n_cls, params.n_ctx) if params.csc else (params.n_ctx,)
        ctx = torch.randn(*shape, embed.weight.shape[1], generator=generator) * params.init_std
        return ctx, " ".join(["X"] * params.n_ctx)

    def prompts(self):
        """Token embeddings [C, L, W] of every class prompt with the current context."""
        import torch

        index = self.slot.clamp(min=0)
        if self.csc:
            ctx = self.ctx[torch.arange(len(self.ctx), device=index.device)[:, None], index]
        else:
            ctx = self.ctx[index]
        return torch.where(self.slot[..., None] >= 0, ctx.to(self.fixed.dtype), self.fixed)


def _layout(n_ctx: int, name_lens, length: int, position: str):
    """For each class: which template token fills each position (src) and which context vector (slot).
    The template is [SOT] X×n_ctx name . [EOT] pad; "front" moves the name before the context and
    "middle" puts it between the two halves (CoOp's layouts). Total length never changes."""
    import torch

    classes = len(name_lens)
    pos = torch.arange(length).expand(classes, -1)
    lens = name_lens.cpu()[:, None]
    head = {"end": n_ctx, "middle": n_ctx // 2, "front": 0}[position]  # context vectors before the name
    in_head = (pos >= 1) & (pos < 1 + head)
    in_name = (pos >= 1 + head) & (pos < 1 + head + lens)
    in_tail = (pos >= 1 + head + lens) & (pos < 1 + n_ctx + lens)
    src = torch.where(in_name, pos - head + n_ctx, pos)  # name tokens sit after the X's in the template
    slot = torch.full_like(pos, -1)
    slot = torch.where(in_head, pos - 1, slot)
    slot = torch.where(in_tail, pos - 1 - lens, slot)
    return src.contiguous(), slot.contiguous()


@register_method
class CoOp(Method):
    name = "coop"
    version = 2  # 2: per-class random draws with csc, n_ctx = the phrase's word count
    inputs = "features"
    precision = "fp16"  # CoOp's default TRAINER.COOP.PREC
    Params = CoOpParams

    def fit(self, task, params: CoOpParams) -> Fitted:
        import torch
        import torch.nn.functional as F

        tower = text_tower(task.backbone.model)
        learner = PromptLearner(tower, task.backbone.tokenizer, task.classnames, params,
                                task.generator("coop", "init")).to(task.device)
        epochs = params.epochs or coop_epochs(task.shots, task.dataset)
        views = task.features.train_views(task.fewshot, task.seed, epochs, params.aug_scale)
        scale = task.logit_scale

        def loss_fn(feats, labels):
            text = F.normalize(encode_token_embeddings(tower, learner.prompts(), learner.eot), dim=-1)
            logits = scale * F.normalize(feats, dim=-1) @ text.t().to(feats.dtype)
            return F.cross_entropy(logits.float(), labels)

        losses = train_on_views(views, loss_fn, [learner.ctx], epochs=epochs, lr=params.lr,
                                batch_size=params.batch_size, generator=task.generator("coop", "batches"),
                                device=task.device, precision=task.precision, momentum=params.momentum,
                                weight_decay=params.weight_decay, warmup_epochs=params.warmup_epochs,
                                warmup_lr=params.warmup_lr, name=self.name)
        def classifier(target_learner):
            with torch.no_grad(), autocast(task.device, task.precision):  # fixed at test time: once
                prompts = target_learner.prompts()
                text = F.normalize(encode_token_embeddings(tower, prompts, target_learner.eot).float(), dim=-1)

            def predict(image_features):
                return scale * F.normalize(image_features.float(), dim=-1) @ text.t()

            return predict

        def for_classes(target):  # the learned context in front of other class names (base-to-new, transfer)
            other = PromptLearner(tower, task.backbone.tokenizer, target.classnames, params,
                                  task.generator("coop", "init")).to(task.device)
            other.ctx = learner.ctx.detach()
            return classifier(other)

        ctx = learner.ctx.detach().cpu()
        transfer = {"no_transfer": "class-specific contexts (csc) belong to the training classes"} if params.csc \
            else {"for_classes": for_classes}
        return Fitted(predict=classifier(learner), **transfer, trainable_params=ctx.numel(), state_bytes=ctx.numel() * ctx.element_size(),
                      metrics={"train_loss_last_epoch": losses[-1]},
                      artifacts={"prompt_context.safetensors": tensors_file({"ctx": ctx})},
                      config={"epochs": epochs, "n_ctx": ctx.shape[-2], "prompt_length": learner.fixed.shape[1]})
