"""Gradients of the methods' losses with respect to the prompt context, all from one text-tower forward pass.

Every loss depends on the context only through the class text features ``t`` (``[n_cls, dim]``), so each
gradient is a vector-Jacobian product ``J^T (dL/dt)`` of the same text tower.  The cotangents ``dL/dt`` come from
the small head (logits, cross-entropy, distillation) evaluated on a detached copy of ``t``; only then does the
expensive part run: the cotangents are pushed through the tower together, either in one batched backward
(``torch.autograd.grad(..., is_grads_batched=True)``) or one backward call each on the retained graph.  Both give
the gradients of the plain "one ``autograd.grad`` per loss" computation up to float summation order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from prograd_pl.methods.losses import distillation_loss

BACKWARDS = ("auto", "batched", "sequential")


@dataclass
class HeadLosses:
    """The losses of one step evaluated on ``leaf``, a detached copy of the text features ``text``."""

    text: torch.Tensor
    leaf: torch.Tensor
    logits: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor | None


def head_losses(
    text: torch.Tensor,
    image: torch.Tensor,
    labels: torch.Tensor,
    logit_scale: torch.Tensor | float,
    teacher: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> HeadLosses:
    """Cross-entropy (and, given the teacher's class features, the distillation loss) on the text features.

    ``text`` and ``teacher`` are normalised class features, ``image`` normalised image features.  The losses are
    built on a detached leaf copy of ``text``, so their gradients at the features cost no pass through the tower.
    """
    leaf = text.detach().requires_grad_(True)
    logits = logit_scale * image @ leaf.t()
    ce = F.cross_entropy(logits, labels)
    kl = None
    if teacher is not None:
        with torch.no_grad():
            teacher_logits = logit_scale * image @ teacher.t()
        kl = distillation_loss(logits, teacher_logits, temperature)
    return HeadLosses(text=text, leaf=leaf, logits=logits, ce=ce, kl=kl)



def parameter_gradients(
    text: torch.Tensor,
    leaf: torch.Tensor,
    losses: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    scale: float = 1.0,
    backward: str = "auto",
) -> list[list[torch.Tensor]]:
    """``d loss / d p`` for each loss (built from ``leaf``, a detached copy of ``text``) and each of ``params``.

    Several learned tensors (CoCoOp's context and meta-net) or one (:func:`context_gradients`): cotangents at the
    text features first, then one backward through the text tower per loss on the retained graph
    (``sequential``), or one vmapped backward for all (``batched``; ``auto`` picks it on accelerators).  ``scale``
    is the fp16 loss scale, divided out of the results.
    """
    if backward not in BACKWARDS:
        raise ValueError(f"backward='{backward}' is not one of {', '.join(BACKWARDS)}.")
    cotangents = [
        torch.autograd.grad(loss * scale, leaf, retain_graph=i < len(losses) - 1)[0].to(text.dtype)
        for i, loss in enumerate(losses)
    ]
    if backward == "auto":
        backward = "sequential" if text.device.type == "cpu" else "batched"
    if len(cotangents) > 1 and backward == "batched":
        stacked = torch.autograd.grad(text, params, torch.stack(cotangents), is_grads_batched=True)
        out = [[g[i] for g in stacked] for i in range(len(cotangents))]
    else:
        last = len(cotangents) - 1
        out = [
            list(torch.autograd.grad(text, params, c, retain_graph=i < last))
            for i, c in enumerate(cotangents)
        ]
    return [[g / scale for g in grads] for grads in out] if scale != 1.0 else out


def context_gradients(
    head: HeadLosses,
    losses: Sequence[torch.Tensor],
    ctx: torch.Tensor,
    scale: float = 1.0,
    backward: str = "auto",
) -> list[torch.Tensor]:
    """``d loss / d ctx`` for each of ``losses`` (built from ``head.leaf``), one text-tower backward for all.

    ``scale`` multiplies the cotangents before the tower's backward and divides the results (fp16 loss
    scaling).  ``backward``: ``batched`` (one vmapped backward), ``sequential`` (one backward call per loss on
    the retained graph) or ``auto`` (batched on accelerators, sequential on the CPU, where it is as fast).
    """
    return [grads[0] for grads in parameter_gradients(head.text, head.leaf, losses, [ctx], scale, backward)]
