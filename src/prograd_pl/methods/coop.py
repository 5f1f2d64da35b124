"""CoOp (Zhou et al., IJCV'22) and ProGrad (Zhu et al., ICCV'23).

CoOp learns the context words of the prompt with the cross-entropy on the shots (:class:`PromptMethod`'s
defaults).  ProGrad is CoOp trained under ProGrad's rule (:class:`prograd_pl.methods.rule.ProGradRule`): its
config sets ``rule: prograd`` and the recipe's lambda, and this class only refuses to run without the rule.
"""

from __future__ import annotations

from prograd_pl.methods.base import PromptMethod


class CoOp(PromptMethod):
    """A learnable context (random, phrase or template initialisation) trained with the cross-entropy."""


class ProGrad(CoOp):
    """CoOp's gradient projected against the zero-shot KL gradient where they conflict (``method.rule=prograd``)."""

    requires_rule = True
