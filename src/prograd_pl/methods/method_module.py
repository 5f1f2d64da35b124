"""The LightningModule of every prompt method: CoOp, ProGrad, KD (as :class:`PromptTuningModule`), CoCoOp,
KgCoOp, and ProGrad's rule applied to the task gradient of CoOp, CoCoOp or KgCoOp (``rule='prograd'``).

The rule is independent of how the prompt is built: the task gradient (cross-entropy, plus KgCoOp's regulariser)
and the general gradient (KL to zero-shot CLIP) are taken with respect to every learned tensor, unscaled,
averaged over DDP ranks, and only then projected (per tensor by default, as the reference loops over parameters;
or once over the concatenated vector).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from prograd_pl.methods.gradients import parameter_gradients
from prograd_pl.methods.losses import distillation_to_zeroshot, knowledge_guided_loss
from prograd_pl.methods.module import METHODS, MethodError, PromptTuningModule
from prograd_pl.methods.projection import SCOPES, conflict_cosine, project_parameters
from prograd_pl.models.backbone import Backbone
from prograd_pl.models.conditional_prompt import ConditionalPromptLearner
from prograd_pl.models.prompt_learner import PromptLearner

PROMPT_METHODS = (*METHODS, "cocoop", "kgcoop")
RULES = ("none", "prograd")
RULE_METHODS = ("coop", "cocoop", "kgcoop")


class MethodModule(PromptTuningModule):
    """:class:`PromptTuningModule` plus ``cocoop``, ``kgcoop`` and the ``rule`` option.

    Args (besides those of :class:`PromptTuningModule`):
        rule: ``none`` or ``prograd`` (project the task gradient against the KL-to-zero-shot gradient with
            ``lam``; for ``coop``, ``cocoop``, ``kgcoop``; ``method='prograd'`` is the paper's ProGrad itself).
        rule_scope: ``tensor`` (each learned tensor its own cosine and projection) or ``vector`` (one over all).
        kg_weight: KgCoOp's weight of ``1 - mean cos(learned, hand-crafted)`` (8.0 in its reference code).
    """

    supported_methods = PROMPT_METHODS

    def __init__(
        self,
        backbone: Backbone,
        prompt_learner: PromptLearner | None,
        method: str = "prograd",
        rule: str = "none",
        rule_scope: str = "tensor",
        kg_weight: float = 8.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, prompt_learner, method=method, **kwargs)
        if rule not in RULES:
            raise MethodError(f"method.rule='{rule}' is not one of {', '.join(RULES)}.")
        if rule_scope not in SCOPES:
            raise MethodError(f"method.rule_scope='{rule_scope}' is not one of {', '.join(SCOPES)}.")
        if rule != "none" and method not in RULE_METHODS:
            hint = " (method=prograd already is the rule on CoOp's gradient)" if method == "prograd" else ""
            raise MethodError(
                f"method.rule={rule} applies to method {', '.join(RULE_METHODS)}, not '{method}'{hint}."
            )
        conditional = isinstance(prompt_learner, ConditionalPromptLearner)
        if (method == "cocoop") != conditional:
            raise MethodError(
                "method=cocoop needs a ConditionalPromptLearner (and only cocoop uses one); got "
                f"{type(prompt_learner).__name__} for method '{method}'."
            )
        self.rule, self.rule_scope, self.kg_weight = rule, rule_scope, float(kg_weight)

    def needs_teacher(self) -> bool:
        return super().needs_teacher() or self.rule == "prograd" or self.method == "kgcoop"

    # ---- forward pieces ------------------------------------------------------------------------------------
    def student_logits(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, n_cls]`` and the normalised class text features (``[B, n_cls, D]`` for CoCoOp)."""
        if self.method != "cocoop":
            text = self.text_features()
        else:
            with self._autocast():
                text = self.prompt_learner(img, self.encoding)
            text = F.normalize(text.float(), dim=-1)
        return self._head_logits(img, text), text

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.method != "cocoop":
            return super().forward(images)
        return self.student_logits(self.image_features(images))[0]

    # ---- training ------------------------------------------------------------------------------------------
    def compute_update(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor | list[torch.Tensor], dict[str, Any]]:
        """Gradients for :meth:`PromptLearner.learned_parameters` (in that order) and what to log.

        As in :class:`PromptTuningModule`, the losses are built on a detached copy of the text features and their
        gradients there (cotangents) are pushed through the text tower (and CoCoOp's meta-net) together.
        """
        if self.method in METHODS and self.rule == "none":
            return super().compute_update(images, labels)
        params = self.prompt_learner.learned_parameters()
        img = self.image_features(images)
        if self.method == "cocoop":
            with self._autocast():
                text = self.prompt_learner(img, self.encoding)
            text = F.normalize(text.float(), dim=-1)
        else:
            text = self.text_features()
        leaf = text.detach().requires_grad_(True)
        logits = self._head_logits(img, leaf)
        ce = F.cross_entropy(logits, labels)
        logs: dict[str, Any] = {"loss_ce": ce.detach()}
        task = ce
        kg = None
        if self.method == "kgcoop":
            kg = knowledge_guided_loss(leaf, self._teacher())
            logs["loss_kg"] = kg.detach()
            task = ce + self.kg_weight * kg
        kl = None
        if self.rule == "prograd":
            kl = distillation_to_zeroshot(logits, img, self._teacher(), self.logit_scale, self.temperature)
            logs["loss_kl"] = kl.detach()
        self.watch.update(self.global_step, {"cross-entropy": ce, "knowledge-guided": kg, "distillation": kl})
        losses = [task] if kl is None else [kl, task]
        per_loss = parameter_gradients(text, leaf, losses, params, self.grad_scale())
        if kl is None:
            grads = self._reduce_all(per_loss[0])
        else:
            g_general, g_task = self._reduce_all(per_loss[0]), self._reduce_all(per_loss[1])
            grads, flags = project_parameters(g_task, g_general, self.lam, self.rule_scope)
            flat_d = torch.cat([g.flatten() for g in g_task])
            flat_g = torch.cat([g.flatten() for g in g_general])
            logs["grad_cos"] = conflict_cosine(flat_d, flat_g)
            conflicts = torch.stack(flags)
            logs["conflict"] = conflicts.any()
            logs["conflict_tensors"] = conflicts.sum()
        logs["logits"] = logits.detach()
        self._extra_logs = {k: logs[k] for k in ("loss_kg", "conflict_tensors") if k in logs}
        return grads, logs

    def _head_logits(self, img: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if text.dim() == 3:  # CoCoOp: one set of class features per image
            return self.logit_scale * torch.einsum("bd,bcd->bc", img, text)
        return self.logit_scale * img @ text.t()

    def _reduce_all(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Average several gradients over the ranks with one all-reduce (identity without a process group)."""
        if len(grads) == 1:
            return [self._reduce(grads[0])]
        flat = self._reduce(torch.cat([g.flatten() for g in grads]))
        return [p.view_as(g) for p, g in zip(torch.split(flat, [g.numel() for g in grads]), grads)]

    def training_step(self, batch, batch_idx: int):
        self._extra_logs: dict[str, Any] = {}
        super().training_step(batch, batch_idx)
        bs = batch[1].shape[0]
        for key in ("loss_kg", "conflict_tensors"):
            if key in self._extra_logs:
                self.log(f"train/{key}", self._extra_logs[key].float(), batch_size=bs)

    # ---- evaluation ----------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        if self.method != "cocoop":
            return super().on_test_epoch_start()
        for m in (self.test_acc, self.test_macro_f1, self.test_per_class):
            m.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        if self.method != "cocoop":
            return super().test_step(batch, batch_idx)
        images, labels = batch
        # a 2-d batch holds cached, normalised image features (see models/feature_cache.py)
        if images.dim() == 2:
            feats = images.to(self.logit_scale.device).float()
        else:
            feats = self.image_features(images)
        with self._autocast():
            logits = self.prompt_learner.logits(feats, self.logit_scale, self.encoding)
        preds = logits.argmax(-1)
        for m in (self.test_acc, self.test_macro_f1, self.test_per_class):
            m.update(preds, labels)

