"""KgCoOp: cross-entropy + w * (1 - mean_c cos(learned_c, hand-crafted_c)); the loss against a hand computation and
a training step (alone and under rule=prograd) against a hand-written 77-token step."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import method_module
from torch.utils.data import DataLoader, TensorDataset

from prograd_pl.methods.losses import knowledge_guided_loss
from prograd_pl.models.prompt_learner import PromptLearner

NAMES = ["airplane", "bear", "car", "dog", "elephant", "flower", "guitar"]
TEMPLATE = "a photo of a {}."
LR, MOM, WD = 0.1, 0.9, 5e-4


def test_knowledge_guided_loss_by_hand():
    learned = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    fixed = torch.tensor([[1.0, 1.0], [0.0, -3.0], [2.0, 2.0]])
    # cosines: 1/sqrt(2), -1, 1  -> 1 - mean = 1 - (0.70711 - 1 + 1) / 3
    expected = 1.0 - (1.0 / math.sqrt(2.0) - 1.0 + 1.0) / 3.0
    assert float(knowledge_guided_loss(learned, fixed)) == pytest.approx(expected, abs=1e-6)
    # the paper's squared distance of normalised features is twice this
    sq = (F.normalize(learned, dim=-1) - F.normalize(fixed, dim=-1)).pow(2).sum(-1).mean()
    assert float(sq) == pytest.approx(2.0 * expected, abs=1e-6)
    assert float(knowledge_guided_loss(fixed, fixed * 5.0)) == pytest.approx(0.0, abs=1e-6)


def hand_step(backbone, ctx0, images, labels, rule, kg_weight):
    """KgCoOp the plain way (77-token prompts via CLIP's own modules), optionally with ProGrad's projection."""
    model = backbone.model
    ctx = ctx0.clone().requires_grad_(True)
    n_ctx = ctx.shape[0]
    tokens = backbone.tokenizer(["X " * n_ctx + f"{n}." for n in NAMES])
    base = model.token_embedding(tokens)
    x = torch.cat([base[:, :1], ctx.unsqueeze(0).expand(len(NAMES), -1, -1), base[:, 1 + n_ctx :]], 1)
    x = model.ln_final(model.transformer(x + model.positional_embedding, attn_mask=model.attn_mask))
    text = F.normalize(x[torch.arange(len(NAMES)), tokens.argmax(-1)] @ model.text_projection, dim=-1)
    with torch.no_grad():
        zs = F.normalize(model.encode_text(backbone.tokenizer([TEMPLATE.format(n) for n in NAMES])), dim=-1)
    img = F.normalize(model.encode_image(images), dim=-1)
    scale = model.logit_scale.exp()
    logits = scale * img @ text.t()
    task = F.cross_entropy(logits, labels) + kg_weight * (1.0 - (text * zs).sum(-1).mean())
    (g_d,) = torch.autograd.grad(task, ctx, retain_graph=True)
    grad, conflict = g_d, False
    if rule == "prograd":
        kl = -(F.softmax(scale * img @ zs.t(), -1) * F.log_softmax(logits, -1)).sum(-1).mean()
        (g_g,) = torch.autograd.grad(kl, ctx)
        dot = (g_d * g_g).sum()
        conflict = bool(dot / (g_d.norm() * g_g.norm()) < 0)
        if conflict:
            grad = g_d - dot / (g_g * g_g).sum() * g_g
    return (ctx0 - LR * (grad + WD * ctx0)).detach(), conflict, (ctx0 - LR * (g_d + WD * ctx0)).detach()


# with the default weight 8 the regulariser dominates and rarely conflicts with the KL gradient; weight 1 does
@pytest.mark.parametrize("rule,kg_weight", [("none", 8.0), ("prograd", 1.0)])
def test_kgcoop_step_equals_hand_written_step(tiny_backbone, rule, kg_weight):
    g = torch.Generator().manual_seed(31)
    images = torch.randn(8, 3, tiny_backbone.image_size, tiny_backbone.image_size, generator=g)
    ctx0 = PromptLearner(tiny_backbone, NAMES, init="phrase", phrase="a photo of a").ctx.detach().clone()
    ctx0 += torch.randn(ctx0.shape, generator=g) * 0.05  # off the template, so the regulariser pulls
    for seed in range(40):
        labels = torch.randint(0, len(NAMES), (8,), generator=torch.Generator().manual_seed(seed))
        ref, conflict, unprojected = hand_step(tiny_backbone, ctx0, images, labels, rule, kg_weight)
        if conflict == (rule == "prograd"):
            break
    assert conflict == (rule == "prograd")
    pl = PromptLearner(tiny_backbone, NAMES, init="phrase", phrase="a photo of a")
    pl.ctx.data.copy_(ctx0)
    module = method_module(
        tiny_backbone, pl, method="kgcoop", rule=rule, kg_weight=kg_weight, lam=1.0, template=TEMPLATE, lr=LR,
        momentum=MOM, weight_decay=WD, max_epochs=1, warmup_epochs=0,
    )  # fmt: skip
    trainer = L.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(images, labels), batch_size=8))
    assert (ref - ctx0).abs().max() > 1e-3
    assert (pl.ctx.detach() - ref).abs().max() <= 1e-5
    assert bool((ref - unprojected).abs().max() > 1e-6) == conflict
    # the regulariser matters: without it the step is another one
    pl.ctx.data.copy_(ctx0)
    module.method.kg_weight, module.rule = 0.0, None
    grads, logs = module.compute_update(images, labels)
    assert float(logs["loss_kg"]) > 0.01
    assert (ctx0 - LR * (grads[0] + WD * ctx0) - unprojected).abs().max() > 1e-4
