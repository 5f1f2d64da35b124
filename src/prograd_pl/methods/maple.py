"""MaPLe, multi-modal prompt learning (Khattak et al., CVPR'23): IVLP whose vision prompts are linear maps of the
text prompts of the same depth (:class:`prograd_pl.models.deep_prompt.CoupledPromptLearner`), trained with the
cross-entropy."""

from __future__ import annotations

from typing import Any

from prograd_pl.errors import MethodError
from prograd_pl.methods.ivlp import IVLP
from prograd_pl.models.deep_prompt import CoupledPromptLearner


class MaPLe(IVLP):
    """Needs a :class:`CoupledPromptLearner` (the config's ``prompt._target_``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.prompt_learner, CoupledPromptLearner):
            raise MethodError(f"MaPLe needs a CoupledPromptLearner (method.prompt._target_); got "
                              f"{type(self.prompt_learner).__name__}.")  # fmt: skip
