"""Zero-shot CLIP: the dataset's hand-crafted template, nothing learned."""

from __future__ import annotations

from prograd_pl.methods.base import PromptMethod


class ZeroShot(PromptMethod):
    """Classifies with :meth:`PromptMethod.teacher`'s class features; takes no gradient steps."""

    trains = False
    accepts_rule = False
