"""PromptSRC, self-regulating prompts (Khattak et al., ICCV'23): IVLP's deep prompts in both towers, regularised
towards the frozen model, and averaged over epochs.

* Loss: ``CE + text_weight * L1(g_p, g) + image_weight * L1(f_p, f0) + kl_weight * KL``: ``g_p`` the prompted
  class features, ``g`` the frozen model's averaged over many templates ("textual diversity": the un-normalised
  features of the first 60 of CLIP's 80 ImageNet templates averaged, then normalised); ``f_p`` the prompted image
  features, ``f0`` the frozen tower's; ``KL = sum p0 (log p0 - log p_p) / (B * C)`` with ``z0 = scale * f0 g^T``
  (the official code's normalisation, T = 1).  L1 is the mean absolute difference of normalised features.
* Gaussian prompt aggregation: after each epoch's last step the learned tensors are accumulated with weight
  ``N(e; gpa_mean, gpa_std)`` (1-based epoch ``e``, normalised over the run's epochs); after the last epoch the
  average replaces them, and that is what is saved and evaluated.  Only the learned tensors are averaged, in fp32,
  and the accumulator is part of ``last.ckpt`` (the official code averages the whole state dict in fp16 and does
  not checkpoint the accumulator: both fixed).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from prograd_pl.methods.ivlp import IVLP
from prograd_pl.models.prompt_learner import classname_text
from prograd_pl.models.text_encoder import PromptTextEncoder


def gpa_weights(epochs: int, mean: float, std: float) -> list[float]:
    """Gaussian weights of the 1-based epochs ``1 .. epochs``, normalised to sum to 1."""
    raw = [math.exp(-((e - mean) ** 2) / (2.0 * std**2)) for e in range(1, epochs + 1)]
    total = sum(raw)
    if total == 0.0:  # every epoch far in the tail: the one nearest the mean takes it all
        nearest = min(range(epochs), key=lambda i: abs(i + 1 - mean))
        return [1.0 if i == nearest else 0.0 for i in range(epochs)]
    return [w / total for w in raw]


class PromptSRC(IVLP):
    """Args (besides :class:`IVLP`'s): ``text_weight`` (25), ``image_weight`` (10), ``kl_weight`` (1), ``templates``
    (60: how many of CLIP's ImageNet templates make the textual diversity), ``gpa_mean`` and ``gpa_std`` (15, 1: the
    base-to-new recipe; None turns the aggregation off)."""

    def __init__(
        self,
        *args: Any,
        text_weight: float = 25.0,
        image_weight: float = 10.0,
        kl_weight: float = 1.0,
        templates: int = 60,
        gpa_mean: float | None = 15.0,
        gpa_std: float | None = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.text_weight, self.image_weight, self.kl_weight = float(text_weight), float(image_weight), float(kl_weight)
        self.templates = [t for t in OPENAI_IMAGENET_TEMPLATES[: int(templates)]]
        self.gpa = None if gpa_mean is None or gpa_std is None else (float(gpa_mean), float(gpa_std))
        self._diverse_key: tuple | None = None
        self._diverse: torch.Tensor | None = None
        self._frozen_image: torch.Tensor | None = None
        self._frozen_of: torch.Tensor | None = None  # the batch they are of
        self.gpa_sum: dict[str, torch.Tensor] = {}

    # ---- the frozen targets --------------------------------------------------------------------------------
    @torch.no_grad()
    def diverse_text(self) -> torch.Tensor:
        """The frozen model's class features averaged (un-normalised) over the templates, then normalised."""
        key = tuple(self.classnames)
        if self._diverse_key != key:
            encoder = PromptTextEncoder(self.backbone.text)
            device = self.logit_scale.device
            total = None
            for template in self.templates:
                ids = self.backbone.tokenizer([template(classname_text(c)) for c in self.classnames]).to(device)
                feats = encoder.encode_tokens(ids, truncate=True).float()
                total = feats if total is None else total + feats
            self._diverse = F.normalize(total / len(self.templates), dim=-1)
            self._diverse_key = key
        return self._diverse

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        # the frozen tower's features of the same batch are the image target of this step's loss
        self._frozen_image, self._frozen_of = self.frozen_image_features(images), images
        return super().image_features(images)

    def teacher_image_features(self, images: torch.Tensor) -> torch.Tensor:
        # under the rule the teacher needs the same frozen features as the image loss: one frozen pass per step
        if images is self._frozen_of and self._frozen_image is not None:
            return self._frozen_image
        return super().teacher_image_features(images)

    def task_loss(
        self, logits: torch.Tensor, text: torch.Tensor, image: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = F.cross_entropy(logits, labels)
        target_text, target_image = self.diverse_text(), self._frozen_image
        text_l1 = (text - target_text).abs().mean()
        image_l1 = (image - target_image).abs().mean()
        zero_shot = self.logit_scale * target_image @ target_text.t()
        kl = F.kl_div(F.log_softmax(logits, dim=-1), F.log_softmax(zero_shot, dim=-1), reduction="sum",
                      log_target=True) / logits.numel()  # fmt: skip
        total = ce + self.text_weight * text_l1 + self.image_weight * image_l1 + self.kl_weight * kl
        return total, {"ce": ce, "text_l1": text_l1, "image_l1": image_l1, "scl_kl": kl}

    # ---- Gaussian prompt aggregation -----------------------------------------------------------------------
    @torch.no_grad()
    def end_of_epoch(self, epoch: int, max_epochs: int) -> None:
        """Add this epoch's learned tensors with their Gaussian weight (``epoch`` 0-based)."""
        if self.gpa is None:
            return
        weight = gpa_weights(max_epochs, *self.gpa)[epoch]
        for name, param in self.prompt_learner.named_parameters():
            value = param.detach().float() * weight
            self.gpa_sum[name] = self.gpa_sum[name] + value if name in self.gpa_sum else value

    @torch.no_grad()
    def end_of_training(self) -> None:
        """The aggregate replaces the learned tensors (it is what is saved and evaluated)."""
        if not self.gpa_sum:
            return
        for name, param in self.prompt_learner.named_parameters():
            param.copy_(self.gpa_sum[name].to(param.dtype))
        self.gpa_sum = {}

    def training_state(self) -> dict[str, Any]:
        return {"gpa_sum": {k: v.detach().cpu().clone() for k, v in self.gpa_sum.items()}}

    def load_training_state(self, state: dict[str, Any]) -> None:
        device = self.logit_scale.device
        self.gpa_sum = {k: v.to(device) for k, v in (state.get("gpa_sum") or {}).items()}
