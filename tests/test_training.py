"""A training step of ours equals a plain hand-written step; DDP averages before projecting."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import fit_one_step, gloo_compute_update, method_module, random_images

from prograd_pl.methods.module import recipe_lr
from prograd_pl.models.prompt_learner import PromptLearner

NAMES = ["airplane", "bear", "car", "dog", "elephant", "flower", "guitar"]
TEMPLATE = "a photo of a {}."
LR, MOM, WD, LAM = 0.1, 0.9, 5e-4, 1.0  # large enough for a visible update, small enough to stay above fp32 noise


def plain_step(backbone, ctx0, images, labels, lam=LAM, method="prograd"):
    """The reference way: student and teacher each encode the images, 77 tokens, two backward passes."""
    model = backbone.model
    pl = PromptLearner(backbone, NAMES, n_ctx=16, init="template", template=TEMPLATE)
    pl.ctx.data.copy_(ctx0)
    scale = model.logit_scale.exp().detach()
    img_s = F.normalize(model.encode_image(images), dim=-1)
    img_t = F.normalize(model.encode_image(images), dim=-1)
    text_s = F.normalize(pl("plain"), dim=-1)
    with torch.no_grad():
        teacher = F.normalize(model.encode_text(backbone.tokenizer([TEMPLATE.format(c) for c in NAMES])), dim=-1)
    logits = scale * img_s @ text_s.t()
    t_logits = scale * img_t @ teacher.t()
    ce = F.cross_entropy(logits, labels)
    kl = -(F.softmax(t_logits, -1) * F.log_softmax(logits, -1)).sum(-1).mean()
    if method == "coop":
        ce.backward()
        grad, conflict = pl.ctx.grad.clone(), None
    else:
        kl.backward(retain_graph=True)
        g_g = pl.ctx.grad.clone()
        pl.ctx.grad = None
        ce.backward()
        g_d = pl.ctx.grad.clone()
        dot = (g_d * g_g).sum()
        conflict = bool(dot / (g_d.norm() * g_g.norm()) < 0)
        grad = g_d - lam * dot / (g_g * g_g).sum() * g_g if conflict else g_d
    # first SGD step: the momentum buffer is the (weight-decayed) gradient
    return ctx0 - LR * (grad + WD * ctx0), conflict


def our_step(backbone, ctx0, images, labels, method="prograd", encoding="auto", precision=None, backward="auto"):
    pl = PromptLearner(backbone, NAMES, n_ctx=16, init="template", template=TEMPLATE)
    pl.ctx.data.copy_(ctx0)
    module = method_module(
        backbone, pl, method=method, template=TEMPLATE, lam=LAM, lr=LR, momentum=MOM, weight_decay=WD,
        max_epochs=1, warmup_epochs=0, encoding=encoding, mixed_dtype=precision,
    )  # fmt: skip
    module.backward = backward
    fit_one_step(module, images, labels)
    return pl.ctx.detach().clone(), module


def initial_ctx(backbone):
    return PromptLearner(backbone, NAMES, n_ctx=16, init="template", template=TEMPLATE).ctx.detach().clone()


@pytest.mark.parametrize("backward", ["sequential", "twin"])
@pytest.mark.parametrize("want_conflict", [True, False])
def test_prograd_step_equals_plain_step(tiny_backbone, want_conflict, backward):
    images = random_images(tiny_backbone, 8, seed=0)
    ctx0 = initial_ctx(tiny_backbone)
    # find a labelling whose two gradients conflict (or align), decided by the hand-written reference
    for seed in range(40):
        labels = torch.randint(0, len(NAMES), (8,), generator=torch.Generator().manual_seed(seed))
        ref, conflict = plain_step(tiny_backbone, ctx0, images, labels)
        if conflict == want_conflict:
            break
    assert conflict == want_conflict
    ours, module = our_step(tiny_backbone, ctx0, images, labels, backward=backward)
    assert module.resolve_backward() == backward  # the GPU path (twin) runs on the CPU here too
    assert module.conflicts == int(conflict)
    assert (ref - ctx0).abs().max() > 1e-3  # a real update happened
    assert (ours - ref).abs().max() <= 1e-5
    # and it is not the plain cross-entropy update when they conflict
    ce_only, _ = plain_step(tiny_backbone, ctx0, images, labels, method="coop")
    assert bool((ce_only - ref).abs().max() > 1e-6) == conflict


def test_coop_and_all_encodings_give_same_step(tiny_backbone):
    images = random_images(tiny_backbone, 8, seed=1)
    labels = torch.arange(8) % len(NAMES)
    ctx0 = initial_ctx(tiny_backbone)
    ref, _ = plain_step(tiny_backbone, ctx0, images, labels, method="coop")
    for enc in ("plain", "truncated", "shared_prefix"):
        ours, _ = our_step(tiny_backbone, ctx0, images, labels, method="coop", encoding=enc)
        assert (ours - ref).abs().max() <= 1e-5, enc


def test_bf16_mixed_projects_with_fp32_master_context(tiny_backbone):
    images = random_images(tiny_backbone, 8, seed=2)
    labels = torch.arange(8) % len(NAMES)
    ctx0 = initial_ctx(tiny_backbone)
    ref, _ = plain_step(tiny_backbone, ctx0, images, labels)
    ours, module = our_step(tiny_backbone, ctx0, images, labels, precision=torch.bfloat16)
    assert module.prompt_learner.ctx.dtype == torch.float32
    assert module.steps_done == 1
    # bf16 towers: close to the fp32 reference, not equal (the projection may flip on a near-zero cosine,
    # so compare update directions)
    cos = torch.nn.functional.cosine_similarity((ours - ctx0).flatten(), (ref - ctx0).flatten(), dim=0)
    print("bf16 update cosine", float(cos))
    assert cos > 0.9


def test_frozen_towers_stay_in_eval_mode(tiny_backbone):
    bn = next(m for m in tiny_backbone.model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    images = random_images(tiny_backbone, 8, seed=3)
    _, module = our_step(tiny_backbone, initial_ctx(tiny_backbone), images, torch.zeros(8, dtype=torch.long))
    module.train()
    assert not tiny_backbone.model.training and module.prompt_learner.training
    assert torch.equal(bn.running_mean, before)
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trainable == ["method.prompt_learner.ctx"]


def test_recipe_schedule():
    assert recipe_lr(0, 50, 0.002) == 1e-5
    assert recipe_lr(1, 50, 0.002) == pytest.approx(0.002)
    assert recipe_lr(49, 50, 0.002) == pytest.approx(7.9e-6, rel=0.01)


def prograd_module(backbone):
    pl = PromptLearner(backbone, NAMES, n_ctx=16, init="template", template=TEMPLATE)
    return method_module(backbone, pl, method="prograd", template=TEMPLATE)


def test_two_gloo_processes_equal_one_process_on_concatenated_batch(tiny_backbone, tmp_path):
    images = random_images(tiny_backbone, 8, seed=4)
    labels = torch.tensor([0, 1, 2, 3, 6, 5, 4, 3])
    got = gloo_compute_update(tiny_backbone, prograd_module, images, labels, tmp_path)

    full, logs = prograd_module(tiny_backbone).compute_update(images, labels)
    assert got["cos"] == pytest.approx(float(logs["grad_cos"]), abs=1e-5)
    (got_grad,), (full,) = got["grad"], full  # one learned tensor: the context
    assert (got_grad - full).abs().max() <= 1e-6 + 1e-5 * full.abs().max()


def test_non_finite_loss_is_recorded_on_the_device_and_raised_at_the_next_read(tiny_backbone):
    from prograd_pl.errors import NonFiniteLossError

    images = random_images(tiny_backbone, 8, seed=5)
    images[3] = float("nan")  # one poisoned image: every loss of the batch is NaN
    labels = torch.arange(8) % len(NAMES)
    with pytest.raises(NonFiniteLossError, match=r"the cross-entropy loss is nan at step 0; expected a finite value"):
        our_step(tiny_backbone, initial_ctx(tiny_backbone), images, labels)


def _fit_steps(backbone, dtype, plugin=None, steps=3):
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    pl = PromptLearner(backbone, NAMES, n_ctx=16, init="template", template=TEMPLATE)
    module = method_module(backbone, pl, method="prograd", template=TEMPLATE, lr=LR, max_epochs=1,
                           warmup_epochs=0, mixed_dtype=dtype)  # fmt: skip
    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, plugins=[plugin] if plugin is not None else None,
    )  # fmt: skip
    images = random_images(backbone, 8, seed=6)
    trainer.fit(module, DataLoader(TensorDataset(images, torch.arange(8) % len(NAMES)), batch_size=8))
    return pl.ctx.detach().clone(), trainer


def test_lightning_bf16_mixed_plugin_runs_the_same_step(tiny_backbone):
    """Under Lightning's bf16-mixed plugin (its autocast around training_step) the step is the method's own: the
    towers' bf16 copies, fp32 head and projection, fp32 context."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    ours, trainer = _fit_steps(tiny_backbone, torch.bfloat16, MixedPrecision("bf16-mixed", "cpu"))
    assert trainer.precision == "bf16-mixed"
    alone, _ = _fit_steps(tiny_backbone, torch.bfloat16)
    assert torch.equal(ours, alone) and ours.dtype == torch.float32


def test_lightning_16_mixed_grad_scaler_unscales_and_skips(tiny_backbone):
    """fp16: the plugin's GradScaler (no hand-rolled scaler) unscales the gradients the step leaves scaled, and
    skips the steps whose scaled gradients overflow while it lowers the scale."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    init = _fit_steps(tiny_backbone, torch.float16, steps=0)[0]
    fp32, _ = _fit_steps(tiny_backbone, None)
    unscaled, _ = _fit_steps(tiny_backbone, torch.float16)  # no scaler: scale 1
    scaled, trainer = _fit_steps(
        tiny_backbone, torch.float16, MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=2.0**6))
    )
    assert trainer.precision_plugin.scaler.get_scale() == 2.0**6  # no overflow, no skip
    update = float((fp32 - init).abs().max())
    assert update > 1e-2
    # the scale (64) undone by the scaler: the steps are the fp32 steps up to fp16 noise (< 1 % of the update
    # here), like fp16 without a scaler; a scale left in would move the context 64 times as far
    for ctx in (scaled, unscaled):
        assert (ctx - fp32).abs().max() <= 0.02 * update
    # a scale far too large: fp16 overflows, every step is skipped, the context untouched and finite
    skipped, trainer = _fit_steps(
        tiny_backbone, torch.float16, MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=2.0**40))
    )
    assert trainer.precision_plugin.scaler.get_scale() == 2.0**37
    assert torch.equal(skipped, init)
