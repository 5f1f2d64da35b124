"""IVLP, independent vision-language prompting (the baseline of MaPLe and PromptSRC, no paper of its own): deep
prompts in the text and the image tower (:class:`prograd_pl.models.deep_prompt.DeepPromptLearner`), trained with the
cross-entropy.  Its image features change with training, so they are never cached and the frozen image pass is not
used."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from prograd_pl.errors import MethodError
from prograd_pl.methods.base import PromptMethod
from prograd_pl.models.deep_prompt import DeepPromptLearner


class IVLP(PromptMethod):
    """Needs a :class:`DeepPromptLearner` (the config's ``prompt._target_``)."""

    prompts_image = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.prompt_learner, DeepPromptLearner):
            raise MethodError(f"{type(self).__name__} needs a DeepPromptLearner (method.prompt._target_); got "
                              f"{type(self.prompt_learner).__name__}.")  # fmt: skip

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised fp32 features of the prompted image tower, with their graph to the vision prompts."""
        with self.autocast():
            feats = self.prompt_learner.encode_image(self.clip.visual, images)
        return F.normalize(feats.float(), dim=-1)

    def class_features(self, image: torch.Tensor | None = None) -> torch.Tensor:
        with self.autocast():
            text = self.prompt_learner(self.encoding)
        return F.normalize(text.float(), dim=-1)
