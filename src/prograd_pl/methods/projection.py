"""ProGrad's gradient rule as a pure function (spec §1.3)."""

from __future__ import annotations

from typing import Sequence

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


SCOPES = ("tensor", "vector")


def project_parameters(
    g_task: Sequence[torch.Tensor], g_general: Sequence[torch.Tensor], lam: float = 1.0, scope: str = "tensor"
) -> tuple[list[torch.Tensor], list[float]]:
    """ProGrad's rule on several parameter tensors; returns the new gradients and the cosines tested.

    ``scope='tensor'`` (the reference's loop over parameters): each tensor has its own cosine and projection.
    ``scope='vector'``: one cosine and projection over all tensors flattened and concatenated.  With a single
    tensor (CoOp's context) both are the same.
    """
    if scope not in SCOPES:
        raise ValueError(f"method.rule_scope='{scope}' is not one of {', '.join(SCOPES)}.")
    if len(g_task) != len(g_general):
        raise ValueError(f"{len(g_task)} task gradients but {len(g_general)} general gradients.")
    if scope == "tensor":
        return (
            [project_conflicting(d, g, lam) for d, g in zip(g_task, g_general)],
            [conflict_cosine(d, g) for d, g in zip(g_task, g_general)],
        )
    flat_d = torch.cat([d.float().flatten() for d in g_task])
    flat_g = torch.cat([g.float().flatten() for g in g_general])
    out = project_conflicting(flat_d, flat_g, lam)
    pieces = torch.split(out, [d.numel() for d in g_task])
    return [p.view_as(d).to(d.dtype) for p, d in zip(pieces, g_task)], [conflict_cosine(flat_d, flat_g)]
