"""Building a method's prompt learner, and saving / restoring what it learned (CoOp context or CoCoOp context +
meta-network) in a checkpoint that holds no frozen CLIP weights."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from prograd_pl.models.backbone import Backbone
from prograd_pl.models.conditional_prompt import ConditionalPromptLearner
from prograd_pl.models.prompt_learner import PromptError, PromptLearner

# methods that learn no prompt
NO_PROMPT_METHODS = ("zeroshot", "linear_probe")


def build_learner(
    method: str,
    backbone: Backbone,
    classnames: Sequence[str],
    template: str,
    prompt: Mapping[str, Any],
    generator: torch.Generator | None = None,
) -> PromptLearner | None:
    """The prompt learner of ``method`` from the ``method.prompt`` options (``None`` for zeroshot/linear_probe).

    ``cocoop`` builds a :class:`ConditionalPromptLearner` (``prompt.hidden_ratio``, default 16).
    """
    if method in NO_PROMPT_METHODS:
        return None
    common = dict(
        n_ctx=prompt.get("n_ctx", 16), init=prompt.get("init", "random"), template=template,
        phrase=prompt.get("phrase"), position=prompt.get("position", "end"), csc=prompt.get("csc", False),
        generator=generator,
    )  # fmt: skip
    if method == "cocoop":
        return ConditionalPromptLearner(
            backbone, classnames, hidden_ratio=prompt.get("hidden_ratio", 16), **common
        )
    return PromptLearner(backbone, classnames, **common)


def checkpoint_payload(learner: PromptLearner, meta: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint stores: ``ctx`` (as before), every learned tensor by name, and the rebuild options."""
    state = learner.learned_state()
    return {"ctx": state["ctx"], "learned": state, "meta": {**learner.meta(), **meta}}


def learner_from_checkpoint(
    blob: Mapping[str, Any], backbone: Backbone, classnames: Sequence[str], template: str
) -> PromptLearner:
    """Rebuild the learner of a checkpoint for ``classnames`` (any class set for generic context) and load it.

    Reads checkpoints with only ``ctx`` (written before ``learned`` existed) as well.
    """
    meta = blob["meta"]
    init = meta["init"]
    names = classnames if not meta["csc"] else meta["classnames"]
    common = dict(
        n_ctx=meta["n_ctx"], init=init, template=template if init == "template" else meta["template"],
        phrase=meta.get("phrase"), position=meta["position"], csc=meta["csc"],
    )  # fmt: skip
    if meta.get("conditional"):
        learner: PromptLearner = ConditionalPromptLearner(
            backbone, names, hidden_ratio=meta.get("hidden_ratio", 16), **common
        )
    else:
        learner = PromptLearner(backbone, names, **common)
    state = blob.get("learned") or {"ctx": blob["ctx"]}
    if "ctx" in state and learner.ctx.shape != state["ctx"].shape:
        raise PromptError(
            f"checkpoint context has shape {tuple(state['ctx'].shape)}, expected {tuple(learner.ctx.shape)} "
            f"(n_ctx={meta['n_ctx']}, csc={meta['csc']})."
        )
    learner.load_learned_state({k: v.float() for k, v in state.items()})
    if meta["csc"] and list(classnames) != list(meta["classnames"]):
        learner.set_classnames(classnames)
    return learner
