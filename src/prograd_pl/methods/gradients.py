"""Gradients of the methods' losses with respect to the prompt context.

Every loss depends on the context only through the class text features ``t`` (``[n_cls, dim]``), so each
gradient is a vector-Jacobian product ``J^T (dL/dt)`` of the same text tower.  Three ways to take two of them:

* ``sequential``: one forward; the cotangents ``dL/dt`` come from the small head (logits, cross-entropy,
  distillation) evaluated on a detached copy of ``t``, then one backward call per loss on the retained graph.
  The fewest FLOPs: the CPU's way.
* ``twin``: two copies of the context run as a batch of two prefixes through one forward, the general loss
  on the first copy's features and the task loss on the second's, and one backward of their sum returns both
  gradients separately (:func:`twin_context_gradients`).  One forward and one backward worth of kernels (twice
  the rows): a GPU step of this size is bound by kernel launches, not FLOPs.
* ``batched``: one backward vmapped over the cotangents (``is_grads_batched``); autograd's legacy vmap falls
  back to a loop for several ops, so it is kept only as an option.

All give the gradients of the plain "one ``autograd.grad`` per loss" computation up to float summation order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from prograd_pl.methods.losses import distillation_to_zeroshot

BACKWARDS = ("auto", "twin", "batched", "sequential")


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
    kl = None if teacher is None else distillation_to_zeroshot(logits, image, teacher, logit_scale, temperature)
    return HeadLosses(text=text, leaf=leaf, logits=logits, ce=ce, kl=kl)


def parameter_gradients(
    text: torch.Tensor,
    leaf: torch.Tensor,
    losses: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    scale: float | torch.Tensor = 1.0,
    backward: str = "auto",
) -> list[list[torch.Tensor]]:
    """``d loss / d p`` for each loss (built from ``leaf``, a detached copy of ``text``) and each of ``params``.

    Several learned tensors (CoCoOp's context and meta-net) or one (:func:`context_gradients`): cotangents at the
    text features first, then one backward through the text tower per loss on the retained graph
    (``sequential``, what ``auto`` means here), or one vmapped backward for all (``batched``).  ``scale``
    multiplies the losses (fp16 loss scaling): a number is divided out of the results, a tensor (a GradScaler's
    scale, on the device) is left in them for the scaler to unscale, check and skip.
    """
    if backward not in BACKWARDS or backward == "twin":
        raise ValueError(f"backward='{backward}' is not one of {', '.join(BACKWARDS)}.")
    cotangents = [
        torch.autograd.grad(loss * scale, leaf, retain_graph=i < len(losses) - 1)[0].to(text.dtype)
        for i, loss in enumerate(losses)
    ]
    if backward == "auto":
        backward = "sequential"
    if len(cotangents) > 1 and backward == "batched":
        stacked = torch.autograd.grad(text, params, torch.stack(cotangents), is_grads_batched=True)
        out = [[g[i] for g in stacked] for i in range(len(cotangents))]
    else:
        last = len(cotangents) - 1
        out = [
            list(torch.autograd.grad(text, params, c, retain_graph=i < last))
            for i, c in enumerate(cotangents)
        ]
    return _unscaled(out, scale)


def loss_gradients(
    losses: Sequence[torch.Tensor], params: Sequence[torch.Tensor], scale: float | torch.Tensor = 1.0
) -> list[list[torch.Tensor]]:
    """``d loss / d p`` for each loss and each of ``params`` through the whole graph, one backward per loss (a
    method whose image features are learned too: no detached head).  A parameter a loss does not reach gets
    zeros.  ``scale`` as in :func:`parameter_gradients`."""
    last = len(losses) - 1
    out = []
    for i, loss in enumerate(losses):
        grads = torch.autograd.grad(loss * scale, params, retain_graph=i < last, allow_unused=True)
        out.append([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)])
    return _unscaled(out, scale)


def _unscaled(out: list[list[torch.Tensor]], scale: float | torch.Tensor) -> list[list[torch.Tensor]]:
    """Divide a number ``scale`` out of the gradients; a tensor (a GradScaler's) is left in for the scaler."""
    if isinstance(scale, torch.Tensor) or scale == 1.0:
        return out
    return [[g / scale for g in grads] for grads in out]


def context_gradients(
    head: HeadLosses,
    losses: Sequence[torch.Tensor],
    ctx: torch.Tensor,
    scale: float | torch.Tensor = 1.0,
    backward: str = "auto",
) -> list[torch.Tensor]:
    """``d loss / d ctx`` for each of ``losses`` (built from ``head.leaf``), one text-tower backward for all.

    ``scale`` multiplies the cotangents before the tower's backward and divides the results (fp16 loss
    scaling).  ``backward``: ``sequential`` (one backward call per loss on the retained graph; ``auto``) or
    ``batched`` (one vmapped backward).
    """
    return [grads[0] for grads in parameter_gradients(head.text, head.leaf, losses, [ctx], scale, backward)]


def twin_losses(
    text: torch.Tensor,
    image: torch.Tensor,
    labels: torch.Tensor,
    logit_scale: torch.Tensor | float,
    teacher: torch.Tensor,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distillation loss on the first copy's class features ``text[0]`` and the cross-entropy (and its
    logits) on the second's ``text[1]``: ``(kl, ce, logits)``; see :func:`twin_context_gradients`."""
    kl = distillation_to_zeroshot(logit_scale * image @ text[0].t(), image, teacher, logit_scale, temperature)
    logits = logit_scale * image @ text[1].t()
    return kl, F.cross_entropy(logits, labels), logits


def twin_context_gradients(
    losses: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    ctx: torch.Tensor,
    scale: float | torch.Tensor = 1.0,
) -> tuple[list[torch.Tensor], HeadLosses]:
    """``[d kl / d ctx, d ce / d ctx]`` from one forward and one backward over two copies of the context.

    ``losses`` maps contexts ``[2, *ctx.shape]`` to ``(kl, ce, logits)``, the distillation loss taken on the
    first copy's features and the cross-entropy on the second's (:func:`twin_losses`); each copy's gradient in
    the backward of their sum is its own loss's (the copies share nothing but their values).  ``scale``
    multiplies the losses before the backward (fp16 loss scaling): a number is divided out of the gradients, a
    tensor (a GradScaler's) left in for the scaler.  Returns the two gradients and the head (logits and losses
    of the task copy).
    """
    twins = ctx.detach().unsqueeze(0).repeat(2, *([1] * ctx.dim())).requires_grad_(True)
    kl, ce, logits = losses(twins)
    total = kl + ce
    plain = not isinstance(scale, torch.Tensor) and scale == 1.0
    (grads,) = torch.autograd.grad(total if plain else total * scale, twins)
    if not plain and not isinstance(scale, torch.Tensor):
        grads = grads / scale
    return [grads[0], grads[1]], HeadLosses(text=logits, leaf=logits, logits=logits, ce=ce, kl=kl)
