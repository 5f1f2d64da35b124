"""CoCoOp's conditional prompt: a meta-network shifts the context by a token pi(x) computed from each image.

For image ``b`` the prompt of class ``c`` is ``[SOT][ctx_1 + pi_b] ... [ctx_M + pi_b][class tokens].[EOT]``.  The
reference builds and encodes all ``B x C`` prompts at 77 tokens.  Here the prompts of one image share their first
``P = 1 + n_ctx`` embeddings (SOT and the shifted context), so the shared-prefix argument of
:mod:`prograd_pl.models.text_encoder` holds per image: the ``B`` prefixes are encoded once each, and the ``B x C``
short class suffixes (cut after the last EOT) attend to their own image's prefix as extra keys and values.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prograd_pl.models.backbone import Backbone
from prograd_pl.models.prompt_learner import ENCODINGS, PromptError, PromptLearner
from prograd_pl.models.text_encoder import (
    PromptTextEncoder,
    _attend,
    _finish,
    _merge_heads,
    _project,
    _qkv_heads,
)


def image_feature_dim(backbone: Backbone) -> int:
    """Dimension of the (projected) image features: the meta-network's input."""
    out = getattr(backbone.model.visual, "output_dim", None)
    if out is None:
        proj = backbone.text.text_projection
        out = proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]
    return int(out)


class ConditionalPromptLearner(PromptLearner):
    """CoCoOp (Zhou et al., CVPR'22): generic context plus a per-image shift from a Linear-ReLU-Linear meta-net.

    Args:
        backbone, classnames, n_ctx, init, template, phrase, generator: as :class:`PromptLearner` (the CoCoOp
            recipe is ``init='phrase'``, ``phrase='a photo of a'``, i.e. 4 context vectors).
        hidden_ratio: meta-net hidden width = image-feature dim // ``hidden_ratio`` (16 in CoCoOp).
        eval_prompt_budget: at most this many prompts (images x classes) are encoded at once without gradients.
    """

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        n_ctx: int = 4,
        init: str = "phrase",
        template: str = "a photo of a {}.",
        phrase: str | None = "a photo of a",
        position: str = "end",
        csc: bool = False,
        hidden_ratio: int = 16,
        eval_prompt_budget: int = 8192,
        generator: torch.Generator | None = None,
    ) -> None:
        if position != "end" or csc:
            raise PromptError(
                "method=cocoop needs prompt.position=end and prompt.csc=false (the image-conditioned context is "
                "generic and precedes the class name)."
            )
        super().__init__(
            backbone, classnames, n_ctx=n_ctx, init=init, template=template, phrase=phrase, csc=False,
            position="end", generator=generator,
        )  # fmt: skip
        vis_dim = image_feature_dim(backbone)
        hidden = max(1, vis_dim // hidden_ratio)
        width = backbone.text.width
        self.hidden_ratio = hidden_ratio
        self.eval_prompt_budget = eval_prompt_budget
        linear1, linear2 = nn.Linear(vis_dim, hidden), nn.Linear(hidden, width)
        if generator is not None:  # reproducible without touching the global RNG
            for lin in (linear1, linear2):
                bound = 1.0 / lin.in_features**0.5
                nn.init.kaiming_uniform_(lin.weight, a=5**0.5, generator=generator)
                nn.init.uniform_(lin.bias, -bound, bound, generator=generator)
        self.meta_net = nn.Sequential(
            OrderedDict([("linear1", linear1), ("relu", nn.ReLU()), ("linear2", linear2)])
        )

    def learned_parameters(self) -> list[nn.Parameter]:
        return [self.ctx, *self.meta_net.parameters()]

    def resolve_encoding(self, encoding: str = "auto") -> str:
        """``auto`` = per-image shared prefix where the text tower supports it, else truncated (both exact)."""
        if encoding not in ENCODINGS:
            raise PromptError(f"prompt.encoding='{encoding}' is not one of {', '.join(ENCODINGS)}.")
        if encoding == "auto":
            return "shared_prefix" if self.encoder.supports_shared_prefix else "truncated"
        return encoding

    def shifted_context(self, image_features: torch.Tensor) -> torch.Tensor:
        """``ctx + pi(x)`` for each image: ``[B, n_ctx, d]``."""
        shift = self.meta_net(image_features)
        return self.ctx.unsqueeze(0) + shift.unsqueeze(1).to(self.ctx.dtype)

    def forward(self, image_features: torch.Tensor, encoding: str = "auto") -> torch.Tensor:
        """Text features ``[B, n_cls, dim]`` (not normalised) of every class prompt of every image.

        ``image_features`` are the L2-normalised image features ``[B, D]`` (the meta-net's input).
        """
        mode = self.resolve_encoding(encoding)
        ctx = self.shifted_context(image_features)
        b, n = ctx.shape[0], self.n_cls
        dtype = self.token_suffix.dtype
        if mode == "shared_prefix":
            prefix = torch.cat([self.token_prefix[:1].expand(b, -1, -1), ctx.to(dtype)], dim=1)
            suffix = self.token_suffix[:, : self.prompt_length - prefix.shape[1]]
            return encode_per_image_prefixes(self.encoder, prefix, suffix, self.eot)
        embeds = torch.cat(
            [
                self.token_prefix.unsqueeze(0).expand(b, -1, -1, -1),
                ctx.to(dtype).unsqueeze(1).expand(-1, n, -1, -1),
                self.token_suffix.unsqueeze(0).expand(b, -1, -1, -1),
            ],
            dim=2,
        ).flatten(0, 1)
        eot = self.eot.repeat(b)
        feats = self.encoder.encode_embeddings(embeds, eot, truncate=mode == "truncated", length=self.prompt_length)
        return feats.view(b, n, -1)

    @torch.no_grad()
    def logits(
        self, image_features: torch.Tensor, logit_scale: torch.Tensor, encoding: str = "auto"
    ) -> torch.Tensor:
        """Evaluation logits ``[B, n_cls]``, the images taken in chunks of at most ``eval_prompt_budget`` prompts."""
        step = max(1, self.eval_prompt_budget // max(1, self.n_cls))
        out = []
        for start in range(0, image_features.shape[0], step):
            img = image_features[start : start + step]
            text = F.normalize(self(img, encoding).float(), dim=-1)
            with torch.autocast(
                device_type=text.device.type, enabled=False
            ):  # fp32 logits under mixed precision
                out.append(logit_scale * torch.einsum("bd,bcd->bc", img.float(), text))
        return torch.cat(out)

    def meta(self) -> dict:
        return {**super().meta(), "conditional": True, "hidden_ratio": self.hidden_ratio}


def encode_per_image_prefixes(
    encoder: PromptTextEncoder, prefix: torch.Tensor, suffix: torch.Tensor, eot: torch.Tensor
) -> torch.Tensor:
    """Encode the ``B x C`` prompts ``cat(prefix[b], suffix[c])``: ``[B, C, dim]``.

    ``prefix`` is ``[B, P, d]`` (one per image), ``suffix`` ``[C, S, d]`` (cut after the last EOT) and ``eot``
    the EOT positions in the full prompt (``>= P``).  Prefix rows of image ``b`` are computed once and serve as
    extra keys/values of that image's ``C`` suffixes (exact: the tower is causal, see ``text_encoder``).
    """
    tower = encoder.tower
    if not encoder.supports_shared_prefix:
        raise ValueError("this text tower does not support shared-prefix encoding")
    b, p_len, _ = prefix.shape
    n, s_len, _ = suffix.shape
    dtype = tower.positional_embedding.dtype
    pos = tower.positional_embedding
    hp = prefix.to(dtype) + pos[:p_len]
    hs = (
        (suffix.to(dtype) + pos[p_len : p_len + s_len])
        .unsqueeze(0)
        .expand(b, -1, -1, -1)
        .reshape(b * n, s_len, -1)
    )
    suffix_mask = tower.attn_mask[p_len : p_len + s_len, p_len : p_len + s_len].to(dtype)  # over the own keys
    prefix_mask = tower.attn_mask[:p_len, :p_len].to(dtype)
    for block in tower.transformer.resblocks:
        hp, hs = _per_image_block(block, hp, hs, prefix_mask, suffix_mask)
    hs = hs.view(b, n, s_len, -1)
    rows = eot.to(hs.device) - p_len
    x = tower.ln_final(hs[:, torch.arange(n, device=hs.device), rows])
    return _project(tower, x)


def _per_image_block(
    block: nn.Module,
    hp: torch.Tensor,
    hs: torch.Tensor,
    prefix_mask: torch.Tensor,
    suffix_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One residual attention block: ``hp [B, P, d]`` prefixes, ``hs [B*n, S, d]`` suffixes grouped by image."""
    qp, kp, vp = _qkv_heads(block, hp)
    qs, ks, vs = _qkv_heads(block, hs)
    op = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=prefix_mask)
    os_ = _attend(qs, kp, vp, ks, vs, suffix_mask)  # image b's prefix serves its n suffixes without copies
    return _finish(block, hp, _merge_heads(op).view_as(hp)), _finish(block, hs, _merge_heads(os_).view_as(hs))
