"""Losses of the methods: cross-entropy on the shots and the soft cross-entropy to zero-shot CLIP."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prograd_pl.errors import NonFiniteLossError


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * mean_batch(-sum_c softmax(z_t/T)_c log_softmax(z_s/T)_c)`` (spec §1.2).

    Equals ``T^2 * KL(p_t || p_s)`` up to the teacher's entropy, which has no gradient.
    """
    t = temperature
    target = F.softmax(teacher_logits.float() / t, dim=-1)
    return -(target * F.log_softmax(student_logits.float() / t, dim=-1)).sum(-1).mean() * t * t




def check_finite(name: str, loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss).all():
        raise NonFiniteLossError(
            f"the {name} loss is {loss.item()} at step {step}; expected a finite value (lower the learning rate, "
            "use trainer.precision=32, or check the inputs)."
        )


def knowledge_guided_loss(text_features: torch.Tensor, handcrafted_features: torch.Tensor) -> torch.Tensor:
    """KgCoOp's regulariser: ``1 - mean_c cos(w_c, w_clip_c)`` between learned and hand-crafted class features.

    The paper writes ``||w - w_clip||^2`` of L2-normalised features, which is ``2 (1 - cos)``; the reference code
    (and its weight 8.0) uses this cosine form.  Both inputs are ``[n_cls, dim]``; they are normalised here.
    """
    learned = F.normalize(text_features.float(), dim=-1)
    fixed = F.normalize(handcrafted_features.float(), dim=-1)
    return 1.0 - (learned * fixed).sum(-1).mean()
