"""Knowledge distillation baseline: the cross-entropy plus ``lam`` times the soft cross-entropy to zero-shot CLIP,
summed into one loss (ProGrad's paper compares against it)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from prograd_pl.methods.base import PromptMethod
from prograd_pl.methods.losses import distillation_to_zeroshot


class KD(PromptMethod):
    """CoOp's context trained with ``CE + lam * T^2 KL(zero-shot || student)``.

    Args (besides :class:`PromptMethod`'s): ``lam`` the distillation weight, ``temperature`` its T.
    """

    needs_teacher = True
    accepts_rule = False  # the distillation term already is the general knowledge, added instead of projected

    def __init__(self, *args: Any, lam: float = 1.0, temperature: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lam, self.temperature = float(lam), float(temperature)

    def task_loss(
        self, logits: torch.Tensor, text: torch.Tensor, image: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = F.cross_entropy(logits, labels)
        kl = distillation_to_zeroshot(logits, image, self.teacher(), self.logit_scale, self.temperature)
        return ce + self.lam * kl, {"ce": ce, "kl": kl}
