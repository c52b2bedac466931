"""CoOp: the prompt assembly is exactly CLIP's text path, the schedule is CoOp's, and it learns."""

import math

import pytest
import torch
import torch.nn.functional as F

from bench.runner import evaluate
from tests.methods.conftest import LEARN_DATASET, zero_shot_top1
from bench.train import coop_epochs, coop_lr, epoch_batches
from methods.coop import CoOp, CoOpParams, PromptLearner, encode_token_embeddings, text_tower


def learner_for(task, **params):
    tower = text_tower(task.backbone.model)
    learner = PromptLearner(tower, task.backbone.tokenizer, task.classnames, CoOpParams(**params),
                            torch.Generator().manual_seed(0))
    return tower, learner


def test_phrase_init_reproduces_zero_shot_text_features(make_task):
    task = make_task(2)
    tower, learner = learner_for(task, ctx_init="a photo of a")
    assert learner.ctx.shape[0] == 4
    ours = F.normalize(encode_token_embeddings(tower, learner.prompts(), learner.eot), dim=-1)
    torch.testing.assert_close(ours, task.text_features(("a photo of a {}.",)), atol=1e-6, rtol=1e-5)


def test_untrained_fit_predicts_zero_shot_logits(make_task):
    # lr 0: the fitted predictor is the prompt "a photo of a {}." end to end (predict path included)
    task = make_task(2)
    fitted = CoOp().fit(task, CoOpParams(ctx_init="a photo of a", epochs=1, lr=0.0, warmup_lr=0.0))
    feats, _ = task.features.test()
    zero_shot = task.logit_scale * F.normalize(feats, dim=-1) @ task.text_features(("a photo of a {}.",)).t()
    torch.testing.assert_close(fitted.predict(feats), zero_shot, atol=1e-4, rtol=1e-5)


def test_truncated_prompt_equals_full_context_length(make_task):
    task = make_task(2)
    tower, learner = learner_for(task)  # random context: no special structure to hide behind
    short = learner.prompts()
    tokens = task.backbone.tokenizer(["X " * 16 + name + "." for name in task.classnames])
    pad = tower.token_embedding(tokens)[:, short.shape[1]:]
    assert short.shape[1] < tokens.shape[1]  # the cut really happens
    full = torch.cat([short, pad], dim=1)
    torch.testing.assert_close(encode_token_embeddings(tower, short, learner.eot),
                               encode_token_embeddings(tower, full, learner.eot), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position,template", [("front", "{} a photo of a."), ("middle", "a photo {} of a."),
                                               ("end", "a photo of a {}.")])
def test_class_token_positions_match_the_written_prompt(make_task, position, template):
    task = make_task(1)
    tower, learner = learner_for(task, ctx_init="a photo of a", class_token_position=position)
    tokens = task.backbone.tokenizer([template.format(name) for name in task.classnames])
    expected = tower.token_embedding(tokens)[:, :learner.prompts().shape[1]]
    torch.testing.assert_close(learner.prompts(), expected, atol=0, rtol=0)
    assert torch.equal(learner.eot, tokens.argmax(-1))


def test_class_specific_context_trains_one_context_per_class(make_task):
    task = make_task(2)
    fitted = CoOp().fit(task, CoOpParams(n_ctx=4, csc=True, epochs=3))
    assert fitted.trainable_params == task.num_classes * 4 * task.backbone.model.token_embedding.weight.shape[1]
    from safetensors.torch import load

    ctx = load(fitted.artifacts["prompt_context.safetensors"])["ctx"]
    assert ctx.shape[:2] == (task.num_classes, 4) and not torch.allclose(ctx[0], ctx[1])


def test_schedule_and_budget_are_coops():
    epochs = 50
    assert coop_lr(0, epochs, 0.002) == 1e-5  # constant warm-up epoch inside the budget
    assert coop_lr(1, epochs, 0.002) == pytest.approx(0.002)
    assert coop_lr(26, epochs, 0.002) == pytest.approx(0.001 * (1 + math.cos(math.pi * 25 / 50)))
    assert [coop_epochs(k, "dtd") for k in (1, 2, 4, 8, 16)] == [50, 100, 100, 200, 200]
    assert coop_epochs(16, "imagenet") == 50


def test_drop_last_only_with_a_full_batch():
    g = torch.Generator().manual_seed(0)
    assert [len(b) for b in epoch_batches(10, 32, g)] == [10]  # 1-shot sets smaller than a batch still train
    assert [len(b) for b in epoch_batches(70, 32, g)] == [32, 32]
    batch = epoch_batches(64, 32, g)
    assert sorted(torch.cat(batch).tolist()) == list(range(64))


def test_cached_views_give_the_same_model_as_recomputed_ones(make_task, tmp_path):
    params = CoOpParams(n_ctx=4, epochs=3)
    cached = make_task(2, features=(tmp_path, True))
    fresh = make_task(2, features=(tmp_path / "unused", False))
    a, b = CoOp().fit(cached, params), CoOp().fit(fresh, params)
    feats, _ = fresh.features.test()
    assert torch.equal(a.predict(feats), b.predict(feats))
    assert not list((tmp_path / "unused").rglob("*"))
    again = CoOp().fit(make_task(2, features=(tmp_path, True)), params)  # now every view is a disk hit
    assert torch.equal(again.predict(feats), a.predict(feats))


def test_learns_beyond_zero_shot_with_the_protocol_defaults(make_task):
    one, many = make_task(1, dataset=LEARN_DATASET), make_task(16, dataset=LEARN_DATASET)
    acc1 = evaluate(CoOp().fit(one, CoOpParams()), "features", one)  # 50 epochs
    acc16 = evaluate(CoOp().fit(many, CoOpParams()), "features", many)  # 200 epochs
    assert acc16 > zero_shot_top1(many) + 10
    assert acc16 >= acc1 + 10


# ---- conformance with CoOp's PromptLearner (expected values from its init rules, never from a bench run)
def test_class_specific_random_context_is_one_independent_draw_per_class(make_task):
    task = make_task(2)
    dim = task.backbone.model.token_embedding.weight.shape[1]
    _, learner = learner_for(task, n_ctx=4, csc=True)  # learner_for seeds the generator with 0
    ctx = learner.ctx.detach()
    # CoOp: torch.empty(n_cls, n_ctx, dim) filled by N(0, 0.02²), i.e. one draw of that shape
    expected = torch.randn(task.num_classes, 4, dim, generator=torch.Generator().manual_seed(0)) * 0.02
    assert ctx.shape == (task.num_classes, 4, dim) and torch.equal(ctx, expected)
    assert ctx.std().item() == pytest.approx(0.02, rel=0.05)
    for c in range(task.num_classes):
        assert ctx[c].std().item() == pytest.approx(0.02, rel=0.25)
        assert all(not torch.allclose(ctx[c], ctx[d]) for d in range(c))  # every class its own start
    _, again = learner_for(task, n_ctx=4, csc=True)
    assert torch.equal(again.ctx, learner.ctx)  # seeded
    _, shared = learner_for(task, n_ctx=4)  # the generic context: one [n_ctx, dim] draw, as before
    torch.testing.assert_close(shared.ctx.detach(), torch.randn(4, dim, generator=torch.Generator().manual_seed(0)) * 0.02,
                               rtol=0, atol=0)


def test_phrase_sets_n_ctx_to_its_word_count_not_its_bpe_tokens(make_task):
    task = make_task(1)
    tower, learner = learner_for(task, ctx_init="itap of a")
    tokens = task.backbone.tokenizer(["itap of a"])
    assert int(tokens.argmax(-1)) - 1 == 4  # 4 BPE tokens: "it", "ap", "of", "a"
    assert learner.ctx.shape[0] == 3 == len("itap of a".split(" "))  # CoOp: n_ctx = the number of words
    # the context: token embeddings of the first n_ctx tokens after SOT ("it", "ap", "of")
    torch.testing.assert_close(learner.ctx.detach(), tower.token_embedding(tokens)[0, 1:4], rtol=0, atol=0)
    # "a" stays a fixed token, so the untrained prompt is the written one: "itap of a {name}."
    written = task.backbone.tokenizer([f"itap of a {name}." for name in task.classnames])
    torch.testing.assert_close(learner.prompts(), tower.token_embedding(written)[:, :learner.prompts().shape[1]],
                               rtol=0, atol=0)
    assert torch.equal(learner.eot, written.argmax(-1))


def test_phrase_with_class_specific_context_starts_every_class_from_the_phrase(make_task):
    task = make_task(1)
    tower, learner = learner_for(task, ctx_init="a photo of a", csc=True)
    phrase = tower.token_embedding(task.backbone.tokenizer(["a photo of a"]))[0, 1:5]
    assert learner.ctx.shape == (task.num_classes, 4, phrase.shape[-1])
    assert all(torch.equal(learner.ctx[c].detach(), phrase) for c in range(task.num_classes))
