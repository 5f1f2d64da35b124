"""ProGrad's gradient rule as a pure function (spec §1.3), computed on the device: no value is read back."""

from __future__ import annotations

from typing import Sequence

import torch


def project_and_flag(
    g_task: torch.Tensor, g_general: torch.Tensor, lam: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`project_conflicting` and whether the two gradients conflicted (a 0-d bool tensor)."""
    d = g_task.float().flatten()
    g = g_general.float().flatten()
    dot = torch.dot(d, g)
    # cos < 0 exactly when <d, g> < 0 (a zero gradient gives 0, not a conflict), so no norm is needed
    conflict = dot < 0
    coef = torch.where(conflict, dot / torch.dot(g, g), 0.0)
    projected = torch.addcmul(d, g, coef, value=-lam)
    return projected.view_as(g_task).to(g_task.dtype), conflict


def project_conflicting(g_task: torch.Tensor, g_general: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Remove from the task gradient its component against the general-knowledge gradient, when they conflict.

    With ``cos = <g_task, g_general> / (|g_task| |g_general|)`` over the flattened tensors:
    ``cos < 0`` (strictly) returns ``g_task - lam * <g_task, g_general> / |g_general|^2 * g_general``;
    otherwise ``g_task``'s values unchanged (the general gradient is never added).  A zero-norm gradient is no
    conflict, so ``g_task`` is returned.  Computed in fp32 with ``torch.where`` (the test stays on the device),
    returned in ``g_task``'s dtype.
    """
    return project_and_flag(g_task, g_general, lam)[0]


def conflict_cosine(g_task: torch.Tensor, g_general: torch.Tensor) -> torch.Tensor:
    """Cosine between the two gradients (NaN when one is zero), a 0-d tensor; logged to show how often they
    conflict."""
    d, g = g_task.float().flatten(), g_general.float().flatten()
    return torch.dot(d, g) / (d.norm() * g.norm())


SCOPES = ("tensor", "vector")


def project_parameters(
    g_task: Sequence[torch.Tensor], g_general: Sequence[torch.Tensor], lam: float = 1.0, scope: str = "tensor"
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """ProGrad's rule on several parameter tensors; returns the new gradients and the conflict flags (0-d bool
    tensors: one per tensor, or one for the whole vector).

    ``scope='tensor'`` (the reference's loop over parameters): each tensor has its own test and projection.
    ``scope='vector'``: one test and projection over all tensors flattened and concatenated.  With a single
    tensor (CoOp's context) both are the same.
    """
    if scope not in SCOPES:
        raise ValueError(f"method.rule_scope='{scope}' is not one of {', '.join(SCOPES)}.")
    if len(g_task) != len(g_general):
        raise ValueError(f"{len(g_task)} task gradients but {len(g_general)} general gradients.")
    if scope == "tensor":
        pairs = [project_and_flag(d, g, lam) for d, g in zip(g_task, g_general)]
        return [p for p, _ in pairs], [c for _, c in pairs]
    flat_d = torch.cat([d.float().flatten() for d in g_task])
    flat_g = torch.cat([g.float().flatten() for g in g_general])
    out, conflict = project_and_flag(flat_d, flat_g, lam)
    pieces = torch.split(out, [d.numel() for d in g_task])
    return [p.view_as(d).to(d.dtype) for p, d in zip(pieces, g_task)], [conflict]
