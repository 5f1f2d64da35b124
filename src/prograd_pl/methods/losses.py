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




def distillation_to_zeroshot(
    student_logits: torch.Tensor,
    image: torch.Tensor,
    teacher: torch.Tensor,
    logit_scale: torch.Tensor | float,
    temperature: float = 1.0,
) -> torch.Tensor:
    """:func:`distillation_loss` against zero-shot CLIP: the teacher's logits are ``logit_scale * image @
    teacher.T`` (its normalised class features), taken without gradient."""
    with torch.no_grad():
        teacher_logits = logit_scale * image @ teacher.t()
    return distillation_loss(student_logits, teacher_logits, temperature)


def _nonfinite_message(name: str, value: float, step: int) -> str:
    return (
        f"the {name} loss is {value} at step {step}; expected a finite value (lower the learning rate, "
        "use trainer.precision=32, or check the inputs)."
    )


class FiniteWatch:
    """The first non-finite loss of a run, recorded on the device at every step and read only when asked.

    :meth:`update` adds a few device ops and no host read (a GPU step never waits for it); :meth:`check`, called
    at logging intervals, before a checkpoint is written and at the end of an epoch, reads the record once and
    raises :class:`NonFiniteLossError` naming the loss, its value and the step where it first happened.
    """

    def __init__(self) -> None:
        self.record: torch.Tensor | None = None  # [step, loss index, value]; step -1 while every loss was finite
        self.names: list[str] = []

    def update(self, step: int, losses: dict[str, torch.Tensor | None]) -> None:
        named = {k: v for k, v in losses.items() if v is not None}
        values = torch.stack([v.detach().float().reshape(()) for v in named.values()])
        if self.record is None or self.record.device != values.device:
            self.record = torch.full((3,), -1.0, device=values.device)
        self.names = list(named)
        bad = ~torch.isfinite(values)
        index = bad.to(torch.uint8).argmax(0, keepdim=True)  # the first bad loss (a tensor index: no host read)
        step_t = torch.full((1,), float(step), device=values.device)
        first = torch.cat([step_t, index.float(), values.gather(0, index)])
        self.record = torch.where(bad.any() & (self.record[0] < 0), first, self.record)

    def check(self) -> None:
        if self.record is None:
            return
        step, index, value = self.record.tolist()
        if step >= 0:
            raise NonFiniteLossError(_nonfinite_message(self.names[int(index)], value, int(step)))


def knowledge_guided_loss(text_features: torch.Tensor, handcrafted_features: torch.Tensor) -> torch.Tensor:
    """KgCoOp's regulariser: ``1 - mean_c cos(w_c, w_clip_c)`` between learned and hand-crafted class features.

    The paper writes ``||w - w_clip||^2`` of L2-normalised features, which is ``2 (1 - cos)``; the reference code
    (and its weight 8.0) uses this cosine form.  Both inputs are ``[n_cls, dim]``; they are normalised here.
    """
    learned = F.normalize(text_features.float(), dim=-1)
    fixed = F.normalize(handcrafted_features.float(), dim=-1)
    return 1.0 - (learned * fixed).sum(-1).mean()
