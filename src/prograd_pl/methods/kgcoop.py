"""KgCoOp (Yao et al., CVPR'23): CoOp plus ``kg_weight * (1 - mean_c cos(learned_c, hand-crafted_c))``, which keeps
the learned class features near zero-shot CLIP's (its reference code's cosine form and weight 8.0)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from prograd_pl.methods.base import PromptMethod
from prograd_pl.methods.losses import knowledge_guided_loss


class KgCoOp(PromptMethod):
    """Args (besides :class:`PromptMethod`'s): ``kg_weight``, the regulariser's weight."""

    needs_teacher = True

    def __init__(self, *args: Any, kg_weight: float = 8.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kg_weight = float(kg_weight)

    def task_loss(
        self, logits: torch.Tensor, text: torch.Tensor, image: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = F.cross_entropy(logits, labels)
        kg = knowledge_guided_loss(text, self.teacher())
        return ce + self.kg_weight * kg, {"ce": ce, "kg": kg}
