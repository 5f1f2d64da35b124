"""Fast paths of issue 13 equal the plain computations they replace (fp32, <= 1e-5)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet

from prograd_pl.methods.gradients import context_gradients, head_losses
from prograd_pl.methods.losses import distillation_loss
from prograd_pl.models.backbone import (
    FrozenImagePass,
    configure_image_pass,
    fold_batchnorm,
    load_backbone,
    text_tower,
)
from prograd_pl.models.prompt_learner import PromptLearner

NAMES = [
    "cat",
    "golden_retriever",
    "st. bernard",
    "Sea or Lake",
    "a very long class name with words",
    "x",
    "dog",
]
TEMPLATE = "a photo of a {}."


def _setup(backbone, seed=0):
    torch.manual_seed(seed)
    pl = PromptLearner(backbone, NAMES, n_ctx=16, init="template", template=TEMPLATE)
    with torch.no_grad():
        pl.ctx.add_(torch.randn_like(pl.ctx) * 0.3)
    dim = backbone.model.text_projection.shape[1]
    img = F.normalize(torch.randn(12, dim), dim=-1)
    teacher = F.normalize(torch.randn(len(NAMES), dim), dim=-1)
    labels = torch.randint(0, len(NAMES), (12,))
    return pl, img, teacher, labels


def _plain_gradients(pl, img, teacher, labels, method, lam=0.7, encoding="plain"):
    """One ``autograd.grad`` per loss on the full graph (what the module did before)."""
    scale = 30.0
    text = F.normalize(pl(encoding), dim=-1)
    logits = scale * img @ text.t()
    ce = F.cross_entropy(logits, labels)
    if method == "coop":
        return list(torch.autograd.grad(ce, pl.ctx))
    kl = distillation_loss(logits, scale * img @ teacher.t(), 2.0)
    if method == "kd":
        return list(torch.autograd.grad(ce + lam * kl, pl.ctx))
    g_general = torch.autograd.grad(kl, pl.ctx, retain_graph=True)[0]
    return [g_general, torch.autograd.grad(ce, pl.ctx)[0]]


@pytest.mark.parametrize("method", ["prograd", "kd", "coop"])
@pytest.mark.parametrize("backward", ["batched", "sequential"])
def test_context_gradients_equal_one_grad_call_per_loss(tiny_backbone, method, backward):
    pl, img, teacher, labels = _setup(tiny_backbone)
    lam = 0.7
    for encoding in ("plain", "auto"):
        ref = _plain_gradients(pl, img, teacher, labels, method, lam, encoding="plain")
        head = head_losses(
            F.normalize(pl(encoding), dim=-1), img, labels, 30.0, None if method == "coop" else teacher, 2.0
        )
        if method == "coop":
            losses = [head.ce]
        else:
            losses = [head.ce + lam * head.kl] if method == "kd" else [head.kl, head.ce]
        ours = context_gradients(head, losses, pl.ctx, backward=backward)
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref):
            assert b.abs().max() > 1e-4  # a real gradient
            assert (a - b).abs().max() <= 1e-5, (method, backward, encoding)
        if method == "prograd":  # the two gradients differ, so a swapped pair would fail
            assert (ref[0] - ref[1]).abs().max() > 1e-3


@pytest.mark.parametrize("scale", [1.0, 2.0**10])
def test_twin_gradients_equal_one_grad_call_per_loss(tiny_backbone, scale):
    """Two copies of the context through one forward and one backward (the GPU path) give each loss's gradient."""
    from prograd_pl.methods.gradients import twin_context_gradients, twin_losses

    pl, img, teacher, labels = _setup(tiny_backbone, seed=2)
    ref = _plain_gradients(pl, img, teacher, labels, "prograd", encoding="plain")

    def losses(contexts):
        return twin_losses(F.normalize(pl("auto", ctx=contexts), dim=-1), img, labels, 30.0, teacher, 2.0)

    ours, head = twin_context_gradients(losses, pl.ctx, scale)
    for a, b in zip(ours, ref):
        assert b.abs().max() > 1e-4
        assert (a - b).abs().max() <= 1e-5 * max(1.0, float(b.abs().max()))
    assert (ref[0] - ref[1]).abs().max() > 1e-3  # a swapped pair would fail
    plain_head = head_losses(F.normalize(pl("plain"), dim=-1), img, labels, 30.0, teacher, 2.0)
    assert abs(float(head.ce - plain_head.ce)) <= 1e-5 and abs(float(head.kl - plain_head.kl)) <= 1e-5


def test_loss_scale_is_undone(tiny_backbone):
    pl, img, teacher, labels = _setup(tiny_backbone, seed=1)
    head = head_losses(F.normalize(pl("auto"), dim=-1), img, labels, 30.0, teacher)
    plain = context_gradients(head, [head.kl, head.ce], pl.ctx)
    head = head_losses(F.normalize(pl("auto"), dim=-1), img, labels, 30.0, teacher)
    scaled = context_gradients(head, [head.kl, head.ce], pl.ctx, scale=2.0**10)
    for a, b in zip(plain, scaled):
        assert (a - b).abs().max() <= 1e-6 * max(1.0, float(a.abs().max()))


def test_unknown_backward_is_refused(tiny_backbone):
    pl, img, teacher, labels = _setup(tiny_backbone)
    head = head_losses(F.normalize(pl("auto"), dim=-1), img, labels, 30.0)
    with pytest.raises(ValueError, match="backward='fast'"):
        context_gradients(head, [head.ce], pl.ctx, backward="fast")


def _features_and_context_gradient(pl, mode, w):
    """Class features of ``pl`` encoded by ``mode`` and the context's gradient of ``sum(features * w)``."""
    pl.ctx.grad = None
    feats = pl(mode)
    (feats * w).sum().backward()
    return feats.detach(), pl.ctx.grad.clone()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shared_prefix_groups_prompts_of_different_lengths(tiny_backbone, dtype):
    # names of 1..7 tokens: several length groups, the longest not first, an EOT in the last block per group
    names = [
        "x",
        "a very long class name with words",
        "cat",
        "sea or lake",
        "golden retriever",
        "ox",
        "st. bernard",
    ]
    model = copy.deepcopy(tiny_backbone.model).to(dtype)
    backbone = dataclasses.replace(tiny_backbone, model=model, text=text_tower(model))
    torch.manual_seed(0)
    pl = PromptLearner(backbone, names, n_ctx=4, init="random").to(dtype)
    with torch.no_grad():  # a non-degenerate context, as in test_encoding
        pl.ctx.add_(torch.randn_like(pl.ctx) * 0.3)
    assert len(set(pl.eot.tolist())) >= 4
    w = torch.randn(len(names), 32, dtype=dtype) * 0.1
    out = {mode: _features_and_context_gradient(pl, mode, w) for mode in ("plain", "shared_prefix")}
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert out["plain"][1].abs().max() > 0.1
    assert (out["plain"][0] - out["shared_prefix"][0]).abs().max() <= tol
    assert (out["plain"][1] - out["shared_prefix"][1]).abs().max() <= tol


# ---- the frozen image pass -------------------------------------------------------------------------------------
def _resnet_with_real_bn_statistics(backbone, seed=0):
    """A copy of the tiny RN model whose BatchNorms are not the identity (random init has mean 0, var 1)."""
    model = copy.deepcopy(backbone.model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.visual.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model


def _plain_image_pass(model, images):
    configure_image_pass(model, fast=False)
    try:
        with torch.no_grad():
            return model.encode_image(images)
    finally:
        configure_image_pass(model, fast=True)


def test_folded_channels_last_image_pass_equals_open_clips(tiny_backbone):
    model = _resnet_with_real_bn_statistics(tiny_backbone)
    assert isinstance(model.visual, FrozenImagePass) and model.visual.image_pass.fast
    keys = list(model.state_dict())
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    plain = _plain_image_pass(model, images)
    with torch.no_grad():
        fast = model.encode_image(images)
    assert not fast.is_inference() and fast.dtype == torch.float32
    assert plain.abs().max() > 0.1
    assert (fast - plain).abs().max() <= 1e-5
    folded = fold_batchnorm(model.visual)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert type(folded).forward is ModifiedResNet.forward
    # open_clip's module tree and state_dict are untouched (BatchNorm kept, no extra keys)
    assert list(model.state_dict()) == keys
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.visual.modules())
    # grad-enabled input, and the features can enter an autograd graph
    x = images.clone().requires_grad_(True)
    model.encode_image(x).sum().backward()
    assert x.grad is not None and x.grad.abs().max() > 0
    w = torch.randn(fast.shape[1], requires_grad=True)
    (fast @ w).sum().backward()


def test_image_pass_follows_weight_changes(tiny_backbone):
    model = _resnet_with_real_bn_statistics(tiny_backbone, seed=2)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model.encode_image(images)
        bn = next(m for m in model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_mean.add_(1.0)  # an in-place change, as load_state_dict makes
        after = model.encode_image(images)
    assert (after - before).abs().max() > 1e-3
    assert (after - _plain_image_pass(model, images)).abs().max() <= 1e-5


def test_image_bf16_option_is_close_not_exact(tiny_backbone):
    model = _resnet_with_real_bn_statistics(tiny_backbone, seed=4)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    plain = _plain_image_pass(model, images)
    configure_image_pass(model, fast=True, bf16=True)
    with torch.no_grad():
        out = model.encode_image(images)
    assert out.dtype == torch.float32
    assert F.cosine_similarity(out, plain, dim=-1).min() > 0.99
    configure_image_pass(model)


@pytest.mark.slow
def test_vit_image_pass_equals_open_clips():
    model = load_backbone("ViT-B-16", None).model  # random weights, the real architecture
    assert isinstance(model.visual, FrozenImagePass)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    plain = _plain_image_pass(model, images)
    with torch.no_grad():
        fast = model.encode_image(images)
    assert (fast - plain).abs().max() <= 1e-5


# ---- the GPU check script's CPU fallback ------------------------------------------------------------------------
def test_gpu_check_script_runs_its_cpu_fallback():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": str(root / "src"),
        "CUDA_VISIBLE_DEVICES": "",
    }
    proc = subprocess.run(
        ["bash", str(root / "benchmarks" / "gpu_check.sh"), "--cpu", "--reps", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if "|| speedup" in ln]
    assert len(lines) == 2, proc.stdout  # fp32 and bf16
    assert all(
        k in proc.stdout for k in ("fp32", "bf16", "prograd/coop", "memory ratio", "gpu check finished")
    )
    # then the profile of each step variant (profile_step.py)
    profiled = [ln for ln in proc.stdout.splitlines() if ln.startswith("-- ") and "device busy" in ln]
    assert [ln.split(":")[0] for ln in profiled] == ["-- our ProGrad step", "-- our CoOp step", "-- reference ProGrad step"]
    assert "aten::item" in proc.stdout and "text side (features + both gradients)" in proc.stdout


# ---- the QuickGELU that saves its slope ------------------------------------------------------------------------
def test_quick_gelu_saving_slope_equals_the_module():
    from open_clip.transformer import QuickGELU

    from prograd_pl.models.text_encoder import _QuickGELUSavingSlope

    x = (torch.randn(64, 96, dtype=torch.float64) * 3).requires_grad_(True)
    grad_out = torch.randn(64, 96, dtype=torch.float64)
    ref_y = QuickGELU()(x)
    (ref_g,) = torch.autograd.grad(ref_y, x, grad_out)
    y, slope = _QuickGELUSavingSlope.apply(x)
    (g,) = torch.autograd.grad(y, x, grad_out)
    assert not slope.requires_grad
    assert torch.equal(y, ref_y)  # the forward is the module's own expression
    assert (g - ref_g).abs().max() <= 1e-12 * ref_g.abs().max()
    assert ref_g.abs().max() > 1.0


def test_shared_prefix_tower_works_under_torch_func_transforms(tiny_backbone):
    """torch.func.vjp + vmap over the fast text path (QuickGELU saving its slope) gives the plain gradients of
    both losses: the custom activation follows torch.func's rules for autograd Functions."""
    from torch.func import functional_call, vjp, vmap

    from prograd_pl.models.text_encoder import _is_quick_gelu_mlp

    pl, img, teacher, labels = _setup(tiny_backbone)
    assert _is_quick_gelu_mlp(text_tower(tiny_backbone.model).transformer.resblocks[0].mlp)
    ref = _plain_gradients(pl, img, teacher, labels, "prograd", encoding="plain")
    text, pullback = vjp(lambda c: F.normalize(functional_call(pl, {"ctx": c}, ("shared_prefix",)), dim=-1), pl.ctx)
    head = head_losses(text.detach(), img, labels, 30.0, teacher, 2.0)
    cotangents = [torch.autograd.grad(loss, head.leaf, retain_graph=True)[0] for loss in (head.kl, head.ce)]
    (stacked,) = vmap(pullback)(torch.stack(cotangents))
    for a, b in zip(stacked, ref):
        assert b.abs().max() > 1e-4
        assert (a - b).abs().max() <= 1e-5


@pytest.mark.parametrize("act", ["gelu", "silu"])
def test_shared_prefix_with_other_activations(tiny_backbone, act):
    """Towers whose MLP is not QuickGELU (the tiny model's) run the module's own activation, still exact."""
    from prograd_pl.models.text_encoder import _is_quick_gelu_mlp

    model = copy.deepcopy(tiny_backbone.model)
    for block in text_tower(model).transformer.resblocks:
        block.mlp.gelu = torch.nn.GELU() if act == "gelu" else torch.nn.SiLU()
    backbone = dataclasses.replace(tiny_backbone, model=model, text=text_tower(model))
    assert not _is_quick_gelu_mlp(text_tower(model).transformer.resblocks[0].mlp)
    assert _is_quick_gelu_mlp(text_tower(tiny_backbone.model).transformer.resblocks[0].mlp)
    pl, img, teacher, labels = _setup(backbone)
    ref = _plain_gradients(pl, img, teacher, labels, "prograd", encoding="plain")
    for backward in ("sequential", "batched"):
        head = head_losses(F.normalize(pl("shared_prefix"), dim=-1), img, labels, 30.0, teacher, 2.0)
        ours = context_gradients(head, [head.kl, head.ce], pl.ctx, backward=backward)
        for a, b in zip(ours, ref):
            assert b.abs().max() > 1e-4
            assert (a - b).abs().max() <= 1e-5, (act, backward)


def test_length_buckets_split_short_from_long_names():
    from prograd_pl.models.text_encoder import length_buckets

    # ImageNet-like: mostly short suffixes, a few long ones -> two buckets with the fewest padded rows
    lengths = [3] * 246 + [4] * 508 + [5] * 155 + [6] * 49 + [7] * 24 + [8] * 9 + [9] * 7 + [10, 13]
    assert length_buckets(lengths) == [(909, 5), (91, 13)]
    assert length_buckets([4, 4, 4]) == [(3, 4)]  # nothing to gain
    assert length_buckets([10] * 9 + [11]) == [(9, 10), (1, 11)]  # any saving: two (the same ops for all sets)
    assert length_buckets([5]) == [(1, 5)]


@pytest.mark.parametrize("names", [NAMES, ["cat", "dog", "ox"]])
def test_shared_prefix_in_one_or_two_buckets_equals_plain(tiny_backbone, names):
    torch.manual_seed(3)
    pl = PromptLearner(tiny_backbone, names, n_ctx=4, init="random")
    with torch.no_grad():
        pl.ctx.add_(torch.randn_like(pl.ctx) * 0.3)
    assert len(pl.padded_suffixes().buckets) == (2 if names is NAMES else 1)
    w = torch.randn(len(names), 32)
    out = {mode: _features_and_context_gradient(pl, mode, w) for mode in ("plain", "shared_prefix")}
    assert (out["plain"][0] - out["shared_prefix"][0]).abs().max() <= 1e-5
    assert (out["plain"][1] - out["shared_prefix"][1]).abs().max() <= 1e-5 * max(1.0, float(out["plain"][1].abs().max()))


def test_deep_prompts_insert_tokens_layer_by_layer(tiny_backbone):
    """Deep prompts (``DeepPrompts``): tokens equal to the hidden states the plain tower computes there give the
    plain features; other tokens change them, and their gradient reaches every inserted layer."""
    from prograd_pl.models.text_encoder import DeepPrompts, PromptTextEncoder

    encoder = PromptTextEncoder(tiny_backbone.text)
    tower = encoder.tower
    ids = tiny_backbone.tokenizer(["X X X X dog.", "X X X X a red car."])
    eot = encoder.eot_index(ids)
    embeds = tower.token_embedding(ids)
    plain = encoder.encode_embeddings(embeds, eot)
    # the hidden states of the four context tokens before block 1 of the plain pass (prompt 0's; the tiny tower
    # has two blocks: depth 2)
    length = int(eot.max()) + 1
    x = embeds[:, :length] + tower.positional_embedding[:length]
    mask = tower.attn_mask[:length, :length]
    states = []
    for block in list(tower.transformer.resblocks)[:1]:
        x = block(x, attn_mask=mask)
        states.append(x[0, 1:5].detach())
    same = encoder.encode_embeddings(embeds[:1], eot[:1], deep=DeepPrompts(1, states))
    assert (same - plain[:1]).abs().max() <= 1e-5
    learned = [torch.randn(4, embeds.shape[-1], generator=torch.Generator().manual_seed(i)).requires_grad_(True)
               for i in range(1)]  # fmt: skip
    other = encoder.encode_embeddings(embeds, eot, deep=DeepPrompts(1, learned))
    assert (other - plain).abs().max() > 1e-3
    other.sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in learned)
