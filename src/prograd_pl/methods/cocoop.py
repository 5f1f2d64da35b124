"""CoCoOp (Zhou et al., CVPR'22): the context shifted per image by a small meta-net (Linear-ReLU-Linear on the
image features), so every image has its own class features; trained with the cross-entropy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from prograd_pl.errors import MethodError
from prograd_pl.methods.base import PromptMethod
from prograd_pl.models.conditional_prompt import ConditionalPromptLearner


class CoCoOp(PromptMethod):
    """Needs a :class:`ConditionalPromptLearner` (the config's ``prompt._target_``)."""

    image_conditioned = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.prompt_learner, ConditionalPromptLearner):
            raise MethodError(
                "method=cocoop needs a ConditionalPromptLearner (and only cocoop uses one); got "
                f"{type(self.prompt_learner).__name__}."
            )

    def class_features(self, image: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised class features ``[B, n_cls, D]``, one set per image."""
        with self.autocast():
            text = self.prompt_learner(image, self.encoding)
        return F.normalize(text.float(), dim=-1)

    @torch.no_grad()
    def eval_class_features(self) -> None:
        return None  # they depend on the image: built per batch by eval_logits

    @torch.no_grad()
    def eval_logits(self, features: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        with self.autocast():
            return self.prompt_learner.logits(features.float(), self.logit_scale, self.encoding)
