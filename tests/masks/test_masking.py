"""The masked-weight mechanism (bench/masking.py) on tiny open_clip encoders built in the test."""

import copy
import math

import numpy as np
import pytest
import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer

from bench.backbone import weights_digest
from bench.errors import BenchError
from bench.method import build_params
from bench.masking import (MaskScores, apply_masks, encode, load_masks, mask_metrics, mask_targets, pack_masks,
                           packed_bytes, read_masks)
from methods.mask_tuning import MaskTuning


def tiny_vit(layers=3):
    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, width=32, layers=layers, heads=2, mlp_ratio=2,
                             output_dim=16).eval().requires_grad_(False)


def tiny_resnet(image_size: int = 64, output_dim: int = 16):
    torch.manual_seed(0)
    model = ModifiedResNet(layers=[1, 1, 1, 1], output_dim=output_dim, heads=2, image_size=image_size, width=8)
    for module in model.modules():  # open_clip zero-inits bn3: give BN real statistics and scales
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval().requires_grad_(False)


def images(n=4, size=32):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_vit_targets_and_block_range():
    vit = tiny_vit()
    assert mask_targets(vit) == ["conv1.weight"] + [f"transformer.resblocks.{b}.attn.{w}" for b in range(3)
                                                    for w in ("in_proj_weight", "out_proj.weight")]
    mlp = mask_targets(vit, "mlp", first_block=1)
    assert mlp == [f"transformer.resblocks.{b}.mlp.{w}.weight" for b in (1, 2) for w in ("c_fc", "c_proj")]
    zhao = mask_targets(vit, "all_linear", first_block=2, last_block=11)  # clamped to the last block
    assert zhao == [f"transformer.resblocks.2.{w}" for w in
                    ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")]
    with pytest.raises(BenchError, match="choose from"):
        mask_targets(vit, "conv")
    with pytest.raises(BenchError, match="select nothing"):
        mask_targets(vit, first_block=5)


def test_vit_b16_masks_are_28_9m_entries_and_3_6_mb():
    import open_clip

    with torch.device("meta"):  # shapes only: no weights, no memory
        model = open_clip.create_model("ViT-B-16-quickgelu", device="meta")
    params = dict(model.visual.named_parameters())
    masks = {n: torch.ones(params[n].shape, dtype=torch.bool, device="meta") for n in mask_targets(model.visual)}
    assert len(masks) == 25
    assert sum(m.numel() for m in masks.values()) == 12 * 4 * 768 * 768 + 768 * 3 * 16 * 16 == 28_901_376
    assert packed_bytes(masks) == 3_612_672


def test_all_masks_on_reproduce_the_frozen_encoder_exactly():
    vit, x = tiny_vit(), images()
    state = MaskScores(vit, mask_targets(vit), threshold=5e-3)
    with torch.no_grad():
        reference = vit(x)
        assert torch.equal(encode(vit, apply_masks(vit, state.binary()), x), reference)
    train_path = encode(vit, state.weights(), x)  # grad-enabled path (no MHA fast path): same numbers
    torch.testing.assert_close(train_path, reference, rtol=0, atol=1e-5)


def test_masked_forward_equals_zeroed_weights_and_train_matches_eval():
    vit, x = tiny_vit(), images()
    state = MaskScores(vit, mask_targets(vit, "all_linear"), threshold=5e-3)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for score in state.scores:  # switch ~30% of the weights off
            score[torch.rand(score.shape, generator=gen) < 0.3] = 0.0
    masks = state.binary()
    zeroed = copy.deepcopy(vit)
    with torch.no_grad():
        for name, param in zeroed.named_parameters():
            if name in masks:
                param.mul_(masks[name])
        expected = zeroed(x)
        assert torch.equal(encode(vit, apply_masks(vit, masks), x), expected)
    torch.testing.assert_close(encode(vit, state.weights(), x), expected, rtol=0, atol=1e-5)
    assert not torch.equal(expected, vit(x))


@pytest.mark.parametrize("build,size,targets", [(tiny_vit, 32, "attn"), (tiny_vit, 32, "all_linear"),
                                                (tiny_resnet, 64, "conv1_attnpool"),
                                                (tiny_resnet, 64, "all_conv_attnpool")])
def test_straight_through_gradient_is_weight_times_masked_weight_gradient(build, size, targets):
    model, x = build(), images(3, size)
    state = MaskScores(model, mask_targets(model, targets), threshold=5e-3)
    with torch.no_grad():
        state.scores[-1][0] = 0.0  # some masks off: their gradient must still flow (straight through)
    encode(model, state.weights(), x).square().sum().backward()
    masked = {n: w.detach().requires_grad_(True) for n, w in apply_masks(model, state.binary()).items()}
    encode(model, masked, x).square().sum().backward()
    params = dict(model.named_parameters())
    for name, score in zip(state.names, state.scores):
        expected = masked[name].grad * params[name]
        torch.testing.assert_close(score.grad, expected, rtol=1e-4, atol=1e-7)
        assert score.grad.abs().sum() > 0, name  # every masked tensor (MHA in_proj included) gets a gradient


def test_frozen_model_is_never_modified_even_when_a_forward_raises():
    vit, x = tiny_vit(), images()
    before, tensors = weights_digest(vit), {n: p for n, p in vit.named_parameters()}
    state = MaskScores(vit, mask_targets(vit), threshold=5e-3)
    with torch.no_grad():
        state.scores[0].fill_(0.0)

    def explode(module, args, output):
        raise RuntimeError("boom")

    handle = vit.transformer.resblocks[1].register_forward_hook(explode)
    with pytest.raises(RuntimeError, match="boom"):
        encode(vit, state.weights(), x)
    handle.remove()
    encode(vit, state.weights(), x).sum().backward()
    assert weights_digest(vit) == before
    assert all(p is tensors[n] and p.grad is None and not p.requires_grad for n, p in vit.named_parameters())
    assert not torch.equal(encode(vit, apply_masks(vit, state.binary()), x), vit(x))


def test_resnet_targets_and_exact_all_on():
    rn, x = tiny_resnet(), images(2, 64)
    assert mask_targets(rn, "conv1_attnpool") == ["conv1.weight", "attnpool.k_proj.weight", "attnpool.q_proj.weight",
                                                  "attnpool.v_proj.weight", "attnpool.c_proj.weight"]
    conv = mask_targets(rn, "conv", first_block=3)
    assert conv == ["layer4.0.conv1.weight", "layer4.0.conv2.weight", "layer4.0.conv3.weight",
                    "layer4.0.downsample.0.weight"]
    assert mask_targets(rn) == mask_targets(rn, "all_conv_attnpool")  # the default: R-AMT's set
    state = MaskScores(rn, mask_targets(rn), threshold=5e-3)
    with torch.no_grad():
        assert torch.equal(encode(rn, apply_masks(rn, state.binary()), x), rn(x))
    with pytest.raises(BenchError, match="ModifiedResNet"):
        mask_targets(rn, "mlp")


def test_uniform_init_gives_the_requested_initial_sparsity():
    vit = tiny_vit()
    state = MaskScores(vit, mask_targets(vit, "all_linear"), threshold=1e-2, init="uniform", sparsity=0.05,
                       generator=torch.Generator().manual_seed(0))
    metrics = mask_metrics(state.binary(), torch.nn.ModuleDict({"visual": vit}))
    assert abs(metrics["masked_pct_of_masked_tensors"] - 5.0) < 0.5
    assert all(s.dtype == torch.float32 and s.requires_grad for s in state.scores)
    with pytest.raises(BenchError, match=r"init_sparsity = 0.0 is out of range \(0.0, 1.0\)"):
        build_params(MaskTuning, {"init": "uniform", "init_sparsity": 0.0})  # declared on the parameter
    with pytest.raises(BenchError, match="init = 'uniformm' is not allowed"):
        build_params(MaskTuning, {"init": "uniformm"})


def test_packed_masks_round_trip_and_metrics_agree_with_the_bits(tmp_path):
    vit = tiny_vit()
    gen = torch.Generator().manual_seed(3)
    params = dict(vit.named_parameters())
    masks = {n: torch.rand(params[n].shape, generator=gen) > 0.2 for n in mask_targets(vit)}
    path = tmp_path / "masks.npz"
    path.write_bytes(pack_masks(masks, 5e-3, {"note": "x"}))
    loaded, info = read_masks(path)
    assert list(loaded) == list(masks) and all(torch.equal(loaded[n], masks[n]) for n in masks)
    assert info == {"threshold": 5e-3, "meta": {"note": "x"}}
    model = torch.nn.ModuleDict({"visual": vit, "head": torch.nn.Linear(10, 10)})
    metrics = mask_metrics(load_masks(path), model)
    off = sum(int((~m).sum()) for m in masks.values())
    entries = sum(m.numel() for m in masks.values())
    assert metrics["masked_count"] == off and metrics["masked_entries"] == entries
    assert metrics["masked_pct_of_masked_tensors"] == pytest.approx(100 * off / entries)
    assert metrics["masked_pct_of_image_encoder"] == pytest.approx(100 * off / sum(p.numel() for p in vit.parameters()))
    assert metrics["masked_pct_of_clip"] < metrics["masked_pct_of_image_encoder"]
    assert packed_bytes(masks) == sum(math.ceil(m.numel() / 8) for m in masks.values())
    with np.load(path) as data:  # the file really holds packed bits (8 entries per byte)
        assert sum(data[f"bits_{i}"].nbytes for i in range(len(masks))) == packed_bytes(masks)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(BenchError, match="masks file"):
        load_masks(tmp_path / "bad.npz")
