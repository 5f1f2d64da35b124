"""ProGrad's rule as a wrapper around any method's task gradient (``method.rule=prograd``).

The general-knowledge loss is the soft cross-entropy of the method's logits to zero-shot CLIP's; its gradient
and the task gradient are taken with respect to every learned tensor, unscaled, averaged over DDP ranks, and only
then projected: per tensor (``scope='tensor'``, as the reference loops over parameters) or once over the
concatenated vector (``scope='vector'``).
"""

from __future__ import annotations

from typing import Sequence

import torch

from prograd_pl.errors import MethodError
from prograd_pl.methods.losses import distillation_to_zeroshot
from prograd_pl.methods.projection import SCOPES, conflict_cosine, project_parameters


class ProGradRule:
    """Args: ``lam`` the projection's strength, ``temperature`` the distillation's T, ``scope`` tensor | vector."""

    def __init__(self, lam: float = 1.0, temperature: float = 1.0, scope: str = "tensor") -> None:
        if scope not in SCOPES:
            raise MethodError(f"method.rule_scope='{scope}' is not one of {', '.join(SCOPES)}.")
        self.lam, self.temperature, self.scope = float(lam), float(temperature), scope

    def general_loss(
        self, logits: torch.Tensor, image: torch.Tensor, teacher: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        """The distillation loss of the method's logits to zero-shot CLIP's (the general knowledge)."""
        return distillation_to_zeroshot(logits, image, teacher, logit_scale, self.temperature)

    def apply(
        self, g_task: Sequence[torch.Tensor], g_general: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """The projected gradients and what to log: the cosine over all tensors, whether any tensor conflicted,
        how many did (device tensors, nothing read back)."""
        grads, flags = project_parameters(g_task, g_general, self.lam, self.scope)
        if len(g_task) == 1:  # one learned tensor (CoOp's context): no concatenation, no stacking (GPU launches)
            return grads, {"grad_cos": conflict_cosine(g_task[0], g_general[0]), "conflict": flags[0],
                           "conflict_tensors": flags[0]}  # fmt: skip
        flat_d = torch.cat([g.flatten() for g in g_task])
        flat_g = torch.cat([g.flatten() for g in g_general])
        conflicts = torch.stack(flags)
        logs = {"grad_cos": conflict_cosine(flat_d, flat_g), "conflict": conflicts.any(),
                "conflict_tensors": conflicts.sum()}  # fmt: skip
        return grads, logs


RULES = {"none": None, "prograd": ProGradRule}
"""``method.rule`` -> the rule's class (``none``: the method's own gradient)."""
