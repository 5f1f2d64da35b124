"""ProGrad's gradient rule as a pure function (spec §1.3)."""

from __future__ import annotations

import torch


def project_conflicting(g_task: torch.Tensor, g_general: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Remove from the task gradient its component against the general-knowledge gradient, when they conflict.

    With ``cos = <g_task, g_general> / (|g_task| |g_general|)`` over the flattened tensors:
    ``cos < 0`` (strictly) returns ``g_task - lam * <g_task, g_general> / |g_general|^2 * g_general``;
    otherwise ``g_task`` unchanged (the general gradient is never added).  A zero-norm gradient makes the cosine
    NaN, which is not ``< 0``, so ``g_task`` is returned.  Computed in fp32, returned in ``g_task``'s dtype.
    """
    d = g_task.float().flatten()
    g = g_general.float().flatten()
    dot = torch.dot(d, g)
    cos = dot / (d.norm() * g.norm())
    if not bool(cos < 0):
        return g_task
    projected = d - lam * (dot / torch.dot(g, g)) * g
    return projected.view_as(g_task).to(g_task.dtype)


def conflict_cosine(g_task: torch.Tensor, g_general: torch.Tensor) -> float:
    """Cosine between the two gradients (NaN when one is zero); logged to show how often they conflict."""
    d, g = g_task.float().flatten(), g_general.float().flatten()
    return float(torch.dot(d, g) / (d.norm() * g.norm()))
