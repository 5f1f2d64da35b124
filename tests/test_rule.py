"""``rule=prograd``: ProGrad's projection on another method's task gradient, per tensor (default) or over the
whole vector; on CoCoOp it equals a hand-written projected step; DDP averages before projecting."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import compose, fit_one_step, gloo_compute_update, method_module, random_images
from test_cocoop import NAMES, learner, reference_text

from prograd_pl.app.config import check, resolve
from prograd_pl.errors import ConfigError, MethodError
from prograd_pl.methods.coop import ProGrad
from prograd_pl.methods.kd import KD
from prograd_pl.methods.module import PromptModule
from prograd_pl.methods.projection import project_parameters
from prograd_pl.methods.rule import ProGradRule
from prograd_pl.models.prompt_learner import PromptLearner

TEMPLATE = "a photo of a {}."
LR, MOM, WD, LAM = 0.1, 0.9, 5e-4, 1.0


def hand_project(d: torch.Tensor, g: torch.Tensor, lam: float) -> tuple[torch.Tensor, bool]:
    """Spec §1.3 written out: remove lam times the component of d along g when their cosine is negative."""
    dot = (d * g).sum()
    conflict = bool(dot / (d.norm() * g.norm()) < 0)
    return (d - lam * dot / (g * g).sum() * g if conflict else d), conflict


def test_project_parameters_per_tensor_and_whole_vector():
    d = [torch.tensor([1.0, 0.0]), torch.tensor([[1.0, 1.0]])]
    g = [torch.tensor([-1.0, 1.0]), torch.tensor([[3.0, 3.0]])]  # first conflicts, second aligned
    out, conflicts = project_parameters(d, g, 1.0, "tensor")
    assert [bool(c) for c in conflicts] == [True, False]
    assert torch.allclose(out[0], torch.tensor([0.5, 0.5])) and torch.equal(out[1], d[1])
    # as one vector: <d, g> = -1 + 6 > 0, nothing is projected
    out_v, conflicts_v = project_parameters(d, g, 1.0, "vector")
    assert len(conflicts_v) == 1 and not conflicts_v[0]
    assert all(torch.equal(a, b) for a, b in zip(out_v, d))
    g2 = [torch.tensor([-1.0, 1.0]), torch.tensor([[-1.0, 0.0]])]  # whole vector conflicts
    out_v, _ = project_parameters(d, g2, 0.5, "vector")
    flat, _ = hand_project(torch.cat([x.flatten() for x in d]), torch.cat([x.flatten() for x in g2]), 0.5)
    assert torch.allclose(torch.cat([x.flatten() for x in out_v]), flat)
    assert out_v[1].shape == (1, 2)
    with pytest.raises(ValueError, match="rule_scope='layer'"):
        project_parameters(d, g, 1.0, "layer")


def hand_cocoop_rule_step(backbone, pl0, images, labels, scope):
    """CoCoOp + ProGrad rule by hand: 77-token prompts, KL and CE gradients by backward, projection, SGD step."""
    model = backbone.model
    ctx = pl0.ctx.detach().clone().requires_grad_(True)
    net = copy.deepcopy(pl0.meta_net)
    params = [ctx, *net.parameters()]
    scale = model.logit_scale.exp()
    img = F.normalize(model.encode_image(images), dim=-1)
    text = F.normalize(reference_text(backbone, ctx, net, img, NAMES), dim=-1)
    logits = scale * torch.einsum("bd,bcd->bc", img, text)
    with torch.no_grad():
        zs = F.normalize(
            model.encode_text(backbone.tokenizer([TEMPLATE.format(n.replace("_", " ")) for n in NAMES])),
            dim=-1,
        )
    t_logits = scale * img @ zs.t()
    kl = -(F.softmax(t_logits, -1) * F.log_softmax(logits, -1)).sum(-1).mean()
    ce = F.cross_entropy(logits, labels)
    kl.backward(retain_graph=True)
    g_g = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    ce.backward()
    g_d = [p.grad.clone() for p in params]
    if scope == "tensor":
        pairs = [hand_project(d, g, LAM) for d, g in zip(g_d, g_g)]
        grads, conflicts = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        flat, c = hand_project(
            torch.cat([x.flatten() for x in g_d]), torch.cat([x.flatten() for x in g_g]), LAM
        )
        grads, conflicts = (
            [x.view_as(d) for x, d in zip(torch.split(flat, [d.numel() for d in g_d]), g_d)],
            [c],
        )
    new = [(p - LR * (g + WD * p)).detach() for p, g in zip(params, grads)]
    ce_only = [(p - LR * (d + WD * p)).detach() for p, d in zip(params, g_d)]
    return new, conflicts, ce_only


@pytest.mark.parametrize("scope", ["tensor", "vector"])
def test_rule_prograd_on_cocoop_equals_hand_written_projected_step(tiny_backbone, scope):
    images = random_images(tiny_backbone, 2, seed=21)
    pl = learner(tiny_backbone)
    # labels for which some tensors conflict and others do not (per tensor), or the whole vector conflicts
    for seed in range(60):
        labels = torch.randint(0, len(NAMES), (2,), generator=torch.Generator().manual_seed(seed))
        ref, conflicts, ce_only = hand_cocoop_rule_step(tiny_backbone, pl, images, labels, scope)
        if (scope == "tensor" and any(conflicts) and not all(conflicts)) or (
            scope == "vector" and conflicts[0]
        ):
            break
    else:
        pytest.fail("no labelling with the wanted conflict pattern")
    module = method_module(
        tiny_backbone, pl, method="cocoop", rule="prograd", rule_scope=scope, lam=LAM, template=TEMPLATE, lr=LR,
        momentum=MOM, weight_decay=WD, max_epochs=1, warmup_epochs=0,
    )  # fmt: skip
    fit_one_step(module, images, labels)
    ours = [p.detach() for p in pl.learned_parameters()]
    for o, r in zip(ours, ref):
        assert (o - r).abs().max() <= 1e-5
    assert module.conflicts == 1
    # the projection changed the update of the conflicting tensors only
    flags = conflicts if scope == "tensor" else [True] * len(ref)
    for r, c, flag in zip(ref, ce_only, flags):
        assert bool((r - c).abs().max() > 1e-6) == flag


def test_rule_prograd_on_coop_is_method_prograd(tiny_backbone):
    images = random_images(tiny_backbone, 8, seed=22)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    results = {}
    for method, rule in (("prograd", "none"), ("coop", "prograd")):
        pl = PromptLearner(tiny_backbone, NAMES, n_ctx=16, init="template", template=TEMPLATE)
        module = method_module(tiny_backbone, pl, method=method, rule=rule, lam=LAM, template=TEMPLATE, lr=LR,
                              max_epochs=1, warmup_epochs=0)  # fmt: skip
        grad, logs = module.compute_update(images, labels)
        results[method] = (grad if torch.is_tensor(grad) else grad[0], logs["grad_cos"])
    assert torch.equal(results["prograd"][0], results["coop"][0])
    assert float(results["prograd"][1]) == pytest.approx(float(results["coop"][1]), abs=1e-6)


def test_rule_options_are_checked(tiny_backbone):
    pl = PromptLearner(tiny_backbone, NAMES, n_ctx=4, init="phrase", phrase="a photo of a")
    with pytest.raises(MethodError, match="ProGrad is a method under ProGrad's rule"):
        PromptModule(ProGrad(tiny_backbone, pl.classnames, prompt=pl))
    with pytest.raises(MethodError, match="cannot wrap KD"):
        PromptModule(KD(tiny_backbone, pl.classnames, prompt=pl), rule=ProGradRule())
    with pytest.raises(MethodError, match="rule_scope='all'"):
        ProGradRule(scope="all")
    for overrides, message in (
        (["method=kd", "method.rule=prograd"], "method.rule=prograd cannot wrap method=kd"),
        (["method=coop", "method.rule=pcgrad"], "method.rule"),
        (["method=prograd", "method.rule=none"], "needs method.rule=prograd"),
        (["method=coop", "+method.lamda=0.5"], "did you mean method.lam"),
    ):
        with pytest.raises(ConfigError, match=message):
            check(resolve(compose(["model=tiny", *overrides])))


def cocoop_rule_module(backbone):
    return method_module(backbone, learner(backbone), method="cocoop", rule="prograd", template=TEMPLATE)


@pytest.mark.slow
def test_cocoop_rule_two_gloo_processes_equal_one_process(tiny_backbone, tmp_path):
    images = random_images(tiny_backbone, 4, seed=23)
    labels = torch.tensor([0, 5, 2, 3])
    got = gloo_compute_update(tiny_backbone, cocoop_rule_module, images, labels, tmp_path)
    full, logs = cocoop_rule_module(tiny_backbone).compute_update(images, labels)
    assert got["cos"] == pytest.approx(float(logs["grad_cos"]), abs=1e-5)
    for g, f in zip(got["grad"], full):
        assert (g - f).abs().max() <= 1e-6 + 1e-5 * f.abs().max()
