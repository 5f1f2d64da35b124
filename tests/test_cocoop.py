"""CoCoOp: the per-image shared-prefix encoding equals the plain 77-token forward (features and gradients of the
context and the meta-network); a training step equals a hand-written CoCoOp step; evaluation on other classes."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import fit_one_step, method_module, random_images
from torch.utils.data import DataLoader, TensorDataset

from prograd_pl.errors import MethodError
from prograd_pl.methods.cocoop import CoCoOp
from prograd_pl.methods.coop import CoOp
from prograd_pl.models.conditional_prompt import ConditionalPromptLearner, image_feature_dim
from prograd_pl.models.prompt_learner import PromptError, PromptLearner

NAMES = ["cat", "golden_retriever", "st. bernard", "Sea or Lake", "a very long class name with words", "x"]
OTHER = ["tulip", "fire truck", "sea_lion", "zebra"]
LR, MOM, WD = 0.1, 0.9, 5e-4


def learner(backbone, names=NAMES, seed=0) -> ConditionalPromptLearner:
    torch.manual_seed(seed)  # the meta-net's nn.Linear init draws from the global RNG: not from earlier tests
    pl = ConditionalPromptLearner(backbone, names, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # a non-degenerate context and meta-net output
        pl.ctx.add_(torch.randn(pl.ctx.shape, generator=torch.Generator().manual_seed(seed + 1)) * 0.3)
    return pl


def image_feats(n: int, dim: int = 32, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def reference_text(backbone, ctx, meta_net, img, names) -> torch.Tensor:
    """CoCoOp as the reference computes it: per image, all class prompts at 77 tokens through CLIP's text tower.

    Written against open_clip's own modules (token embedding, transformer with its full causal mask, EOT pooling
    by the largest token id), independently of this project's encoders.
    """
    model = backbone.model
    n_ctx = ctx.shape[0]
    tokens = backbone.tokenizer(["X " * n_ctx + f"{n.replace('_', ' ')}." for n in names])
    base = model.token_embedding(tokens)
    out = []
    for b in range(img.shape[0]):
        shifted = ctx + meta_net(img[b : b + 1])
        x = torch.cat([base[:, :1], shifted.unsqueeze(0).expand(len(names), -1, -1), base[:, 1 + n_ctx :]], 1)
        x = model.transformer(x + model.positional_embedding, attn_mask=model.attn_mask)
        x = model.ln_final(x)[torch.arange(len(names)), tokens.argmax(-1)] @ model.text_projection
        out.append(x)
    return torch.stack(out)


def test_meta_net_shape_and_init(tiny_backbone):
    pl = learner(tiny_backbone)
    dim = image_feature_dim(tiny_backbone)
    assert dim == 32
    assert pl.n_ctx == 4  # "a photo of a"
    assert pl.meta_net.linear1.weight.shape == (dim // 16, dim)
    assert pl.meta_net.linear2.weight.shape == (tiny_backbone.text.width, dim // 16)
    names = [n for n, _ in pl.named_parameters()]
    assert names == ["ctx", "meta_net.linear1.weight", "meta_net.linear1.bias", "meta_net.linear2.weight",
                     "meta_net.linear2.bias"]  # fmt: skip
    assert [p.data_ptr() for p in pl.learned_parameters()] == [p.data_ptr() for p in pl.parameters()]
    with pytest.raises(PromptError, match="position=end"):
        ConditionalPromptLearner(tiny_backbone, NAMES, position="middle")


@pytest.mark.parametrize("batch", [1, 4])
def test_per_image_shared_prefix_equals_plain_forward_and_gradients(tiny_backbone, batch):
    pl = learner(tiny_backbone)
    img = image_feats(batch)
    w = torch.randn(batch, len(NAMES), 32, generator=torch.Generator().manual_seed(7))
    ref_net = copy.deepcopy(pl.meta_net)
    ref_ctx = pl.ctx.detach().clone().requires_grad_(True)
    ref = reference_text(tiny_backbone, ref_ctx, ref_net, img, NAMES)
    (ref * w).sum().backward()
    ref_grads = [ref_ctx.grad, *(p.grad for p in ref_net.parameters())]
    assert all(g.abs().max() > 0 for g in ref_grads)
    for mode in ("plain", "truncated", "shared_prefix", "auto"):
        pl.zero_grad(set_to_none=True)
        out = pl(img, mode)
        assert out.shape == (batch, len(NAMES), 32)
        assert (out - ref).abs().max() <= 1e-5, mode
        (out * w).sum().backward()
        for p, g in zip(pl.learned_parameters(), ref_grads):
            # 1e-5 relative to the gradient's scale (the meta-net's bias gradient sums over images: ~5)
            assert (p.grad - g).abs().max() <= 1e-5 * max(1.0, float(g.abs().max())), mode
    assert pl.resolve_encoding("auto") == "shared_prefix"


def reference_step(backbone, pl0, images, labels):
    """Hand-written first SGD step of CoCoOp (77-token prompts, cross-entropy); returns the new parameters."""
    model = backbone.model
    ctx = pl0.ctx.detach().clone().requires_grad_(True)
    net = copy.deepcopy(pl0.meta_net)
    img = F.normalize(model.encode_image(images), dim=-1)
    text = F.normalize(reference_text(backbone, ctx, net, img, NAMES), dim=-1)
    logits = model.logit_scale.exp() * torch.einsum("bd,bcd->bc", img, text)
    F.cross_entropy(logits, labels).backward()
    params = [ctx, *net.parameters()]
    return [(p - LR * (p.grad + WD * p)).detach() for p in params]


def our_step(backbone, pl, images, labels, precision=None, **kw):
    module = method_module(
        backbone, pl, method="cocoop", lr=LR, momentum=MOM, weight_decay=WD, max_epochs=1, warmup_epochs=0,
        mixed_dtype=precision, **kw,
    )  # fmt: skip
    fit_one_step(module, images, labels)
    return [p.detach().clone() for p in pl.learned_parameters()], module


def test_cocoop_step_equals_hand_written_step(tiny_backbone):
    images = random_images(tiny_backbone, 3, seed=11)
    labels = torch.tensor([0, 4, 2])
    pl = learner(tiny_backbone)
    start = [p.detach().clone() for p in pl.learned_parameters()]
    ref = reference_step(tiny_backbone, pl, images, labels)
    ours, module = our_step(tiny_backbone, pl, images, labels)
    assert module.steps_done == 1
    for s, r, o in zip(start, ref, ours):
        assert (r - s).abs().max() > 1e-4  # every tensor moved
        assert (o - r).abs().max() <= 1e-5


def test_cocoop_bf16_keeps_fp32_master_weights(tiny_backbone):
    images = random_images(tiny_backbone, 3, seed=12)
    labels = torch.tensor([1, 3, 5])
    pl = learner(tiny_backbone)
    start = [p.detach().clone() for p in pl.learned_parameters()]
    ref = reference_step(tiny_backbone, pl, images, labels)
    ours, _ = our_step(tiny_backbone, pl, images, labels, precision=torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in pl.learned_parameters())
    upd_ref = torch.cat([(r - s).flatten() for r, s in zip(ref, start)])
    upd_ours = torch.cat([(o - s).flatten() for o, s in zip(ours, start)])
    cos = F.cosine_similarity(upd_ref, upd_ours, dim=0)
    print("bf16 CoCoOp update cosine", float(cos))
    assert cos > 0.9


def test_cocoop_evaluates_other_class_sets_and_cached_features(tiny_backbone):
    pl = learner(tiny_backbone)
    module = method_module(tiny_backbone, pl, method="cocoop")
    module.set_eval_classes(OTHER, template="a photo of a {}.")
    pl.eval_prompt_budget = 5  # forces chunks of one image (5 // 4 classes)
    images = random_images(tiny_backbone, 6, seed=13)
    img = module.image_features(images)
    with torch.no_grad():
        ref_text = F.normalize(reference_text(tiny_backbone, pl.ctx, pl.meta_net, img, OTHER), dim=-1)
    ref_logits = module.logit_scale * torch.einsum("bd,bcd->bc", img, ref_text)
    assert (module(images) - ref_logits).abs().max() <= 1e-4  # logits are scaled by 100
    labels = ref_logits.argmax(-1)
    labels[:2] = (labels[:2] + 1) % len(OTHER)  # 4 of 6 right
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    for data in (images, img):  # images, then cached normalised features
        trainer.test(module, DataLoader(TensorDataset(data, labels), batch_size=4), verbose=False)
        assert module.test_results["acc"] == pytest.approx(100.0 * 4 / 6)
        assert len(module.test_results["per_class_acc"]) == len(OTHER)


def test_method_and_learner_must_match(tiny_backbone):
    plain = PromptLearner(tiny_backbone, NAMES, n_ctx=4, init="phrase", phrase="a photo of a")
    with pytest.raises(MethodError, match="needs a ConditionalPromptLearner"):
        CoCoOp(tiny_backbone, plain.classnames, prompt=plain)
    with pytest.raises(MethodError, match="ConditionalPromptLearner is CoCoOp's"):
        CoOp(tiny_backbone, NAMES, prompt=learner(tiny_backbone))


def test_learned_state_round_trip(tiny_backbone):
    a, b = learner(tiny_backbone, seed=0), learner(tiny_backbone, seed=5)
    state = a.learned_state()
    assert set(state) == {n for n, _ in a.named_parameters()}
    b.load_learned_state(state)
    img = image_feats(2)
    with torch.no_grad():
        assert torch.equal(a(img), b(img))
    with pytest.raises(PromptError, match="checkpoint holds"):
        PromptLearner(tiny_backbone, NAMES, n_ctx=4).load_learned_state(state)


def test_checkpoint_round_trip_for_other_classes(tiny_backbone, tmp_path):
    from prograd_pl.models.checkpoint import checkpoint_payload, learner_from_checkpoint

    pl = ConditionalPromptLearner(
        tiny_backbone, NAMES, n_ctx=4, init="phrase", phrase="a photo of a", template="a photo of a {}.",
        hidden_ratio=16, generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    with torch.no_grad():
        for p in pl.learned_parameters():
            p.add_(0.1)
    torch.save(checkpoint_payload(pl, {"backbone": tiny_backbone.name}), tmp_path / "ckpt.pt")
    blob = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert set(blob["learned"]) == {n for n, _ in pl.named_parameters()}
    back = learner_from_checkpoint(blob, tiny_backbone, OTHER, "a type of flower, a photo of a {}.")
    assert isinstance(back, ConditionalPromptLearner) and back.classnames == OTHER
    pl.set_classnames(OTHER)
    img = image_feats(3)
    with torch.no_grad():
        assert torch.equal(back(img), pl(img))
    # a CoOp checkpoint of the old format (ctx only) still loads
    coop = PromptLearner(tiny_backbone, NAMES, n_ctx=8, init="random", template="a photo of a {}.")
    assert coop.ctx.shape == (8, 32)
    old = {"ctx": coop.ctx.detach() + 1.0, "meta": coop.meta()}
    assert torch.equal(learner_from_checkpoint(old, tiny_backbone, OTHER, "a photo of a {}.").ctx, old["ctx"])
