"""ProGrad's projection follows spec §1.3 exactly."""

from __future__ import annotations

import torch

from prograd_pl.methods.losses import distillation_loss
from prograd_pl.methods.projection import project_conflicting


def test_conflict_removes_exactly_the_conflicting_component():
    g_d = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    g_g = torch.tensor([[-2.0, 0.0], [1.0, 1.0]])
    dot = (g_d * g_g).sum()
    assert dot < 0
    out = project_conflicting(g_d, g_g, lam=1.0)
    expected = g_d - dot / (g_g * g_g).sum() * g_g
    assert torch.allclose(out, expected)
    assert abs(float((out * g_g).sum())) < 1e-6  # orthogonal to the general direction after projection
    half = project_conflicting(g_d, g_g, lam=0.5)
    assert torch.allclose(half, g_d - 0.5 * dot / (g_g * g_g).sum() * g_g)


def test_aligned_or_orthogonal_keeps_task_gradient_untouched():
    g_d = torch.randn(16, 8)
    assert torch.equal(project_conflicting(g_d, g_d * 3.0), g_d)  # the general gradient is never added
    ortho = torch.zeros(16, 8)
    ortho[0, 0] = 1.0
    g = g_d.clone()
    g[0, 0] = 0.0
    assert torch.equal(project_conflicting(g, ortho), g)


def test_lambda_zero_is_cross_entropy_and_zero_gradients_do_not_nan():
    g_d, g_g = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.1])
    assert torch.equal(project_conflicting(g_d, g_g, lam=0.0), g_d)
    zero = torch.zeros(2)
    assert torch.equal(project_conflicting(g_d, zero), g_d)
    assert torch.equal(project_conflicting(zero, g_g), zero)
    assert torch.isfinite(project_conflicting(zero, zero)).all()


def test_half_precision_input_projected_in_fp32():
    g_d = torch.tensor([1.0, 2.0, -3.0]).half()
    g_g = torch.tensor([-1.0, 0.5, 1.0]).half()
    out = project_conflicting(g_d, g_g)
    assert out.dtype == torch.float16
    d, g = g_d.float(), g_g.float()
    assert torch.allclose(out.float(), d - (d @ g) / (g @ g) * g, atol=1e-3)


def test_distillation_loss_matches_kl_gradient():
    zs = torch.randn(4, 5, requires_grad=True)
    zt = torch.randn(4, 5)
    for t in (1.0, 2.0):
        (g1,) = torch.autograd.grad(distillation_loss(zs, zt, t), zs)
        kl = torch.nn.functional.kl_div(
            torch.log_softmax(zs / t, -1), torch.softmax(zt / t, -1), reduction="batchmean"
        ) * t * t
        (g2,) = torch.autograd.grad(kl, zs)
        assert torch.allclose(g1, g2, atol=1e-6)
