"""What every prompt method is: the tensors it learns, the class features and logits it builds, its task loss.

A method is a small ``nn.Module`` subclass of :class:`PromptMethod` (one file each: ``coop.py``, ``kd.py``,
``cocoop.py``, ``kgcoop.py``, ``zeroshot.py``), named by its config's ``_target_``.  The one LightningModule,
:class:`prograd_pl.methods.module.PromptModule`, trains any of them: it owns the manual-optimisation loop, the
schedule, the metrics, checkpoints, and the gradient rule (:class:`prograd_pl.methods.rule.ProGradRule`) that
wraps any method's task gradient.  What the app needs to know about a method (does it train, may the rule wrap
it, can its image features be cached) are the class attributes below, never its name.

The step reads a method through four calls: :meth:`image_features` (the image side), :meth:`class_features`
(the text side, with its graph to the learned tensors), :meth:`logits` and :meth:`task_loss` (on a detached copy
of the class features: their gradient there costs no pass through the tower).  Evaluation reads
:meth:`eval_class_features` once per test set and :meth:`eval_logits` per batch.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prograd_pl.errors import MethodError
from prograd_pl.models.backbone import Backbone, FrozenImagePass
from prograd_pl.models.conditional_prompt import ConditionalPromptLearner
from prograd_pl.models.prompt_learner import PromptLearner
from prograd_pl.models.zeroshot import zeroshot_text_features

MIXED_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
"""``trainer.precision`` -> the dtype of the frozen towers' copies (what is learned stays fp32)."""


class PromptMethod(nn.Module):
    """A prompt-learning method on a frozen CLIP.

    Args:
        backbone: the frozen open_clip model (shared by the method and its zero-shot teacher).
        classnames: the training classes.
        template: the hand-crafted template of the zero-shot classifier (the teacher, KgCoOp's reference).
        prompt: a prompt learner, or a partial one from the config, built here for ``classnames`` with its random
            initialisation drawn from ``seed`` (a private generator: the global RNG is untouched).
        encoding: text encoding path (``auto`` = the fastest exact one).
        precision: ``trainer.precision``: the frozen towers run as copies cast once to it.
    """

    trains: ClassVar[bool] = True
    """Takes gradient steps (zero-shot CLIP does not)."""
    needs_teacher: ClassVar[bool] = False
    """Its task loss reads zero-shot CLIP's class features."""
    accepts_rule: ClassVar[bool] = True
    """``method.rule=prograd`` may wrap its task gradient."""
    requires_rule: ClassVar[bool] = False
    """The method is a rule on another's gradient (ProGrad is CoOp under the rule): ``rule=none`` is refused."""
    image_conditioned: ClassVar[bool] = False
    """Its class features depend on the image (``[B, n_cls, D]``, as CoCoOp's)."""
    prompts_image: ClassVar[bool] = False
    """It changes the image features (deep vision prompts): they are never cached and the frozen pass is not
    used.  Every method here keeps the image tower frozen."""

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str] | None,
        *,
        template: str = "a photo of a {}.",
        prompt: Callable[..., PromptLearner] | PromptLearner | None = None,
        seed: int = 0,
        encoding: str = "auto",
        precision: str = "32",
    ) -> None:
        super().__init__()
        learner = prompt
        if learner is not None and not isinstance(learner, PromptLearner):
            learner = learner(backbone, list(classnames), template=template,
                              generator=torch.Generator().manual_seed(int(seed)))  # fmt: skip
        if self.trains and learner is None:
            raise MethodError(f"{type(self).__name__} needs a prompt learner (method.prompt).")
        if isinstance(learner, ConditionalPromptLearner) and not self.image_conditioned:
            raise MethodError(
                f"{type(self).__name__} takes a plain PromptLearner; a ConditionalPromptLearner is CoCoOp's "
                "(method=cocoop)."
            )
        self.clip = backbone.model
        self.backbone = backbone
        self.prompt_learner = learner
        self.template = template
        self.encoding = encoding
        self.mixed_dtype = MIXED_DTYPES.get(str(precision))
        if learner is not None:  # the frozen text tower runs as a copy cast once (not autocast per call)
            learner.encoder.compute_dtype = self.mixed_dtype
        self.register_buffer("logit_scale", backbone.model.logit_scale.detach().exp().float().clone(), persistent=False)
        self.teacher_key: tuple | None = None
        self.register_buffer("teacher_features", torch.empty(0), persistent=False)
        if classnames is None and learner is None:
            raise MethodError("zero-shot classification needs the class names.")
        self._classnames = list(classnames) if classnames is not None else list(learner.classnames)
        self.set_classes(self._classnames)

    # ---- classes -------------------------------------------------------------------------------------------
    @property
    def classnames(self) -> list[str]:
        if self.prompt_learner is not None:
            return self.prompt_learner.classnames
        return list(self._classnames)

    def set_classes(self, classnames: Sequence[str], template: str | None = None) -> None:
        """Point the classifier at ``classnames`` (base, new, or another dataset's classes)."""
        if template is not None:
            self.template = template
        learner = self.prompt_learner
        if learner is not None:
            retarget = template is not None and learner.init == "template" and template != learner.template
            if list(classnames) != learner.classnames or retarget:
                learner.set_classnames(classnames, template=template if retarget else None)
                learner.to(self.logit_scale.device)
        self._classnames = list(classnames)

    def teacher(self) -> torch.Tensor:
        """Zero-shot CLIP's normalised class features for the current classes and template (cached)."""
        key = (tuple(self.classnames), self.template)
        if self.teacher_key != key:
            feats = zeroshot_text_features(self.backbone, self.classnames, self.template)
            self.teacher_features = feats.to(self.logit_scale.device)
            self.teacher_key = key
        return self.teacher_features

    def learned_parameters(self) -> list[nn.Parameter]:
        """The tensors the optimiser updates, in a fixed order (the step's gradients follow it)."""
        return [] if self.prompt_learner is None else self.prompt_learner.learned_parameters()

    def train(self, mode: bool = True) -> "PromptMethod":
        """Only what is learned follows ``mode``: the frozen towers stay in eval (RN50's BatchNorm)."""
        super().train(mode)
        self.clip.eval()
        return self

    def autocast(self):
        """Autocast of the towers in a mixed precision (CoCoOp's per-image prompts), else nothing."""
        if self.mixed_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.logit_scale.device.type, dtype=self.mixed_dtype)

    # ---- the step's four calls -----------------------------------------------------------------------------
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """The method's L2-normalised fp32 image features ``[B, D]``: the frozen tower's, unless it prompts it."""
        return self.frozen_image_features(images)

    def teacher_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """The image features the rule's teacher (zero-shot CLIP) sees for a method that prompts the image tower:
        the frozen, unprompted tower's. A method that already has them for this batch returns those."""
        return self.frozen_image_features(images)

    @torch.no_grad()
    def frozen_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised fp32 image features ``[B, D]`` of the frozen, unprompted image tower (zero-shot CLIP's)."""
        visual = self.clip.visual
        if isinstance(visual, FrozenImagePass):  # mixed precision: a copy of the tower cast once
            dtype = self.mixed_dtype or (torch.bfloat16 if visual.image_pass.bf16 else None)
            feats = visual.forward_frozen(images, dtype)
        else:
            with self.autocast():
                feats = self.clip.encode_image(images)
        return F.normalize(feats.float(), dim=-1)

    def class_features(self, image: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised class features ``[n_cls, D]`` (with their graph to the learned tensors)."""
        if self.prompt_learner is None:
            return self.teacher()
        return F.normalize(self.prompt_learner(self.encoding).float(), dim=-1)

    def logits(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``logit_scale * cos`` between the images and the class features (per image for ``[B, n_cls, D]``)."""
        if text.dim() == 3:
            return self.logit_scale * torch.einsum("bd,bcd->bc", image, text)
        return self.logit_scale * image @ text.t()

    def task_loss(
        self, logits: torch.Tensor, text: torch.Tensor, image: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss whose gradient the method follows, and its named parts (logged as ``train/loss_<name>``).

        ``text`` holds the class features the logits were computed from.  CoOp's: the cross-entropy.
        """
        ce = F.cross_entropy(logits, labels)
        return ce, {"ce": ce}

    # ---- training-time state (PromptSRC's prompt aggregation) ------------------------------------------------
    def end_of_epoch(self, epoch: int, max_epochs: int) -> None:
        """Called after the last optimiser step of 0-based ``epoch`` of ``max_epochs``."""

    def end_of_training(self) -> None:
        """Called once training ends, before the trained prompt is saved and evaluated."""

    def training_state(self) -> dict:
        """What :meth:`end_of_epoch` accumulated, for ``last.ckpt`` (exact resume)."""
        return {}

    def load_training_state(self, state: dict) -> None:
        """Restore :meth:`training_state` from ``last.ckpt``."""

    # ---- the twin path (ProGrad's two gradients in one forward, see methods/gradients.py) --------------------
    def twin_ready(self) -> bool:
        """Whether the class features can be taken for a batch of contexts (:meth:`twin_class_features`): one
        learned tensor (the context), not conditioned on the image, encoded with a shared prefix."""
        learner = self.prompt_learner
        return (
            learner is not None
            and not self.image_conditioned
            and len(self.learned_parameters()) == 1
            and learner.resolve_encoding(self.encoding) == "shared_prefix"
        )

    def twin_class_features(self, contexts: torch.Tensor) -> torch.Tensor:
        """Normalised class features ``[copies, n_cls, D]`` for a batch of contexts ``[copies, n_ctx, d]``."""
        return F.normalize(self.prompt_learner(self.encoding, ctx=contexts).float(), dim=-1)

    # ---- evaluation ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def eval_class_features(self) -> torch.Tensor | None:
        """The class features of a whole evaluation (once per test set), or None when they depend on the image."""
        return self.class_features().detach()

    @torch.no_grad()
    def eval_logits(self, features: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        """fp32 logits of normalised image features against :meth:`eval_class_features`."""
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.logit_scale * features.float() @ text.t()
