"""Conformance with R-AMT's code: the tensors it masks on CLIP's RN50, and how masked weights are counted.
Expected values come from the architecture and the definitions, never from a run of bench itself."""

import pytest
import torch

from bench.masking import MaskScores, mask_metrics, mask_targets, resolve_targets

RN50_BLOCKS = (3, 4, 6, 3)  # Bottlenecks per stage; the first of each stage has a downsample branch


def rn50_masked_names() -> set[str]:
    """R-AMT's MaskModifiedResNet: every convolution is an ElementWiseConv2d (the three stem convolutions;
    conv1, conv2, conv3 of each Bottleneck; the downsample branch's conv "0") and the attention pool's
    q/k/v/c projections are ElementWiseLinear layers: each masks its weight."""
    names = {f"conv{i}.weight" for i in (1, 2, 3)}
    for stage, blocks in enumerate(RN50_BLOCKS, start=1):
        for block in range(blocks):
            names |= {f"layer{stage}.{block}.conv{i}.weight" for i in (1, 2, 3)}
        names.add(f"layer{stage}.0.downsample.0.weight")
    return names | {f"attnpool.{p}_proj.weight" for p in "qkvc"}


@pytest.fixture(scope="module")
def rn50():
    import open_clip

    # random weights: no download; only the architecture matters here (a few seconds to build)
    return open_clip.create_model("RN50-quickgelu").visual


def test_rn50_default_masks_every_convolution_and_the_attention_pool(rn50):
    expected = rn50_masked_names()
    assert len(expected) == 3 + 3 * sum(RN50_BLOCKS) + len(RN50_BLOCKS) + 4 == 59
    names = mask_targets(rn50)  # the default, "rmt"
    assert resolve_targets(rn50, "rmt") == "all_conv_attnpool"
    assert len(names) == 59 and set(names) == expected
    order = [n for n, _ in rn50.named_parameters()]
    assert names == [n for n in order if n in expected]  # in parameter order
    # every 4-D weight of the encoder is a convolution, and every one of them is masked
    assert {n for n, p in rn50.named_parameters() if p.ndim == 4} == {n for n in expected if "attnpool" not in n}
    assert mask_targets(rn50, "conv1_attnpool") == ["conv1.weight", "attnpool.k_proj.weight",
                                                   "attnpool.q_proj.weight", "attnpool.v_proj.weight",
                                                   "attnpool.c_proj.weight"]


def test_a_score_exactly_at_the_threshold_is_counted_masked():
    # The forward keeps a weight while s > τ, so s = τ is switched off and counted: #(s ≤ τ). R-AMT's
    # printout counts #(s < τ), one less here: the two differ only for scores exactly at τ.
    tau = 5e-3
    layer = torch.nn.Linear(4, 5, bias=False).requires_grad_(False)
    model = torch.nn.ModuleDict({"visual": torch.nn.ModuleDict({"fc": layer})})
    state = MaskScores(model.visual, ["fc.weight"], threshold=tau)  # every score starts at 1e-2 > τ
    with torch.no_grad():
        scores = state.scores[0].view(-1)
        scores[0] = tau  # exactly τ (τ in fp32, as the comparison is made)
        scores[1] = 0.0
        scores[2] = torch.nextafter(torch.tensor(tau), torch.tensor(1.0))  # just above τ: kept
    s = state.scores[0].detach()
    assert int((s <= tau).sum()) == 2 and int((s < tau).sum()) == 1
    metrics = mask_metrics(state.binary(), model)
    assert metrics["masked_count"] == 2 and metrics["masked_entries"] == 20
    assert metrics["masked_pct_of_masked_tensors"] == pytest.approx(100 * 2 / 20)
    assert not state.binary()["fc.weight"].view(-1)[0]  # the mask really switches the tied weight off
