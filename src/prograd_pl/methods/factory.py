"""Factories that the config's ``method`` node points at (``_target_``): one call builds the LightningModule of a
method from its options plus what is only known at run time (the backbone, the class names, the seed)."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import torch

from prograd_pl.methods.method_module import MethodModule
from prograd_pl.methods.module import PromptTuningModule
from prograd_pl.models.backbone import Backbone
from prograd_pl.models.prompt_learner import PromptLearner

MIXED_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def prompt_tuning(
    backbone: Backbone,
    classnames: Sequence[str],
    *,
    name: str,
    template: str,
    prompt: Callable[..., PromptLearner] | PromptLearner | None = None,
    optim: Callable[..., torch.optim.Optimizer] | None = None,
    lam: float = 0.0,
    temperature: float = 1.0,
    encoding: str = "auto",
    precision: str = "32",
    max_epochs: int = 1,
    warmup_epochs: int = 1,
    warmup_lr: float = 1e-5,
    seed: int = 0,
    rule: str = "none",
    rule_scope: str = "tensor",
    kg_weight: float = 8.0,
) -> PromptTuningModule:
    """A :class:`MethodModule` for method ``name`` (zeroshot | coop | prograd | kd | cocoop | kgcoop).

    ``rule='prograd'`` projects the task gradient of coop, cocoop or kgcoop against the KL-to-zero-shot gradient
    (``lam``; per learned tensor, or over the whole vector with ``rule_scope='vector'``); ``kg_weight`` is KgCoOp's
    weight of its regulariser.

    ``prompt`` is a prompt learner, or a partial ``PromptLearner`` from the config that is built here for
    ``classnames`` with its random initialisation drawn from ``seed`` (a private generator: the global RNG is
    untouched). ``optim`` is a partial optimiser (``torch.optim.SGD`` in the recipe); its ``lr`` is the base of the
    warm-up + cosine schedule. ``precision`` selects the towers' autocast; what is learned stays fp32.
    """
    learner = prompt
    if learner is not None and not isinstance(learner, PromptLearner):
        learner = learner(backbone, list(classnames), template=template,
                          generator=torch.Generator().manual_seed(int(seed)))  # fmt: skip
    lr = _keyword(optim, "lr", 0.002)
    return MethodModule(
        backbone, learner, method=name, rule=rule, rule_scope=rule_scope, kg_weight=kg_weight, template=template,
        lam=lam, temperature=temperature, lr=lr,
        momentum=_keyword(optim, "momentum", 0.9), weight_decay=_keyword(optim, "weight_decay", 5e-4),
        max_epochs=max(int(max_epochs), 1), warmup_epochs=warmup_epochs, warmup_lr=warmup_lr, encoding=encoding,
        mixed_dtype=MIXED_DTYPES.get(str(precision)), classnames=list(classnames), optimizer=optim,
    )  # fmt: skip


def _keyword(factory: Any, key: str, default: float) -> float:
    if isinstance(factory, functools.partial) and key in factory.keywords:
        return float(factory.keywords[key])
    return default
