"""Deep prompts in both towers of an open_clip ViT (IVLP; the base of MaPLe and PromptSRC).

Text: the context replaces the tokens after SOT at the input (as CoOp's); before blocks ``1 .. text_depth - 1`` the
hidden states of those positions are overwritten by fresh learned tokens (no positional embedding, causal mask
unchanged).  Vision: ``vision_tokens`` learned tokens are appended after the class and patch tokens (after the
positional embedding, before ``ln_pre``); before blocks ``1 .. vision_depth - 1`` the last ``vision_tokens`` tokens
are replaced by a fresh set.  Depth 1 is input-level prompts only; vision depth 0 leaves the image tower unprompted.
Every deep tensor starts from N(0, 0.02^2) drawn from the run's generator.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from prograd_pl.errors import PromptError
from prograd_pl.models.backbone import Backbone
from prograd_pl.models.prompt_learner import PromptLearner
from prograd_pl.models.text_encoder import DeepPrompts


def vision_transformer(visual: nn.Module) -> nn.Module:
    """The open_clip ``VisionTransformer`` under the project's frozen-pass wrapper, if any."""
    module = getattr(visual, "module", visual)
    if not all(hasattr(module, a) for a in ("conv1", "class_embedding", "positional_embedding", "transformer")):
        raise PromptError(f"deep vision prompts need a ViT image tower; this model's is a {type(module).__name__}.")
    return module


class DeepPromptLearner(PromptLearner):
    """CoOp's context plus deep text prompts and (deep) vision prompts.

    Args (besides :class:`PromptLearner`'s): ``text_depth`` (J_t >= 1: blocks that see fresh text prompts, the
    input counted), ``vision_tokens`` (n_v), ``vision_depth`` (J_v >= 0).
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
        text_depth: int = 9,
        vision_tokens: int = 4,
        vision_depth: int = 9,
        generator: torch.Generator | None = None,
    ) -> None:
        if position != "end" or csc:
            raise PromptError("deep prompts need prompt.position=end and prompt.csc=false (one context after SOT).")
        super().__init__(backbone, classnames, n_ctx=n_ctx, init=init, template=template, phrase=phrase,
                         position="end", csc=False, generator=generator)  # fmt: skip
        text_blocks = len(backbone.text.transformer.resblocks)
        vit = vision_transformer(backbone.model.visual)
        vision_blocks = len(vit.transformer.resblocks)
        if not 1 <= int(text_depth) <= text_blocks:
            raise PromptError(f"prompt.text_depth={text_depth} must be between 1 and the text tower's {text_blocks} "
                              "blocks.")  # fmt: skip
        if not 0 <= int(vision_depth) <= vision_blocks:
            raise PromptError(f"prompt.vision_depth={vision_depth} must be between 0 and the image tower's "
                              f"{vision_blocks} blocks.")  # fmt: skip
        if int(vision_depth) > 0 and int(vision_tokens) < 1:
            raise PromptError(f"prompt.vision_tokens={vision_tokens} must be >= 1 when prompt.vision_depth > 0.")
        self.text_depth, self.vision_depth = int(text_depth), int(vision_depth)
        self.vision_tokens = int(vision_tokens) if self.vision_depth > 0 else 0
        text_width = backbone.text.width
        vision_width = vit.positional_embedding.shape[-1]

        def fresh(rows: int, width: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(rows, width, generator=generator) * 0.02)

        self.text_prompts = nn.ParameterList([fresh(self.n_ctx, text_width) for _ in range(self.text_depth - 1)])
        self.vision_prompts = nn.ParameterList(
            [fresh(self.vision_tokens, vision_width) for _ in range(self.vision_depth)]
        )

    def learned_parameters(self) -> list[nn.Parameter]:
        return [self.ctx, *self.text_prompts, *self.vision_prompts]

    def resolve_encoding(self, encoding: str = "auto") -> str:
        """Deep prompts change hidden states inside the tower: the (exact) truncated 77-token path."""
        mode = super().resolve_encoding(encoding)
        return "plain" if mode == "plain" else "truncated"

    def forward(self, encoding: str = "auto", ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Class text features ``[n_cls, dim]`` (not normalised) with the deep text prompts inserted."""
        if ctx is not None:
            raise PromptError("deep prompts take no replacement context.")
        mode = self.resolve_encoding(encoding)
        deep = DeepPrompts(1, list(self.text_prompts)) if len(self.text_prompts) else None
        return self.encoder.encode_embeddings(self.prompt_embeddings(), self.eot, truncate=mode == "truncated",
                                              length=self.prompt_length, deep=deep)  # fmt: skip

    def vision_prompt_list(self) -> list[torch.Tensor]:
        """The vision prompts of blocks ``0 .. vision_depth - 1`` (``[n_v, width]`` each)."""
        return list(self.vision_prompts)

    def encode_image(self, visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Image features ``[B, D]`` (not normalised) of the prompted image tower (``visual``, frozen)."""
        vit = vision_transformer(visual)
        x = vit.conv1(images.to(vit.conv1.weight.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = vit.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + vit.positional_embedding.to(x.dtype)
        prompts = self.vision_prompt_list()
        if prompts:
            x = torch.cat([x, prompts[0].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
        x = vit.ln_pre(x)
        # the deeper sets replace the last tokens block by block, as the text side's (DeepPrompts)
        deep = DeepPrompts(x.shape[1] - prompts[0].shape[0] if prompts else 0, prompts[1:])
        x = deep.run(vit.transformer, x, None)
        pooled, _ = vit._pool(x)
        return pooled @ vit.proj if vit.proj is not None else pooled

    def meta(self) -> dict:
        return {**super().meta(), "deep": {"text_depth": self.text_depth, "vision_tokens": self.vision_tokens,
                                           "vision_depth": self.vision_depth}}  # fmt: skip


class CoupledPromptLearner(DeepPromptLearner):
    """MaPLe (Khattak et al., CVPR'23): deep text prompts whose vision prompts are linear maps of them.

    The vision prompt of depth ``k`` is ``F_k(P_k)`` with ``P_0`` the context and ``P_k`` the deep text prompt of
    block ``k``; ``F_k`` is a ``Linear(text width -> image width)`` of its own per depth.  ``F_0`` starts from
    PyTorch's default Linear initialisation, ``F_1 .. F_{J-1}`` as copies of one such Linear (the official code's
    deep copies).  Gradients reach ``P_k`` from both towers (the coupling).  With ``init=phrase`` and ``n_ctx``
    below the phrase's tokens the remaining words stay fixed text (MaPLe's 2 tokens "a photo" + "of a").

    Args (besides :class:`PromptLearner`'s): ``depth`` (J: blocks of both towers that see fresh prompts).
    """

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        n_ctx: int = 2,
        init: str = "phrase",
        template: str = "a photo of a {}.",
        phrase: str | None = "a photo of a",
        position: str = "end",
        csc: bool = False,
        depth: int = 9,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(backbone, classnames, n_ctx=n_ctx, init=init, template=template, phrase=phrase,
                         position=position, csc=csc, text_depth=depth, vision_tokens=0, vision_depth=0,
                         generator=generator)  # fmt: skip
        vit = vision_transformer(backbone.model.visual)
        if int(depth) > len(vit.transformer.resblocks):
            raise PromptError(f"prompt.depth={depth} must be at most the image tower's "
                              f"{len(vit.transformer.resblocks)} blocks.")  # fmt: skip
        self.depth = self.vision_depth = int(depth)
        self.vision_tokens = self.n_ctx
        text_width = backbone.text.width
        vision_width = vit.positional_embedding.shape[-1]

        def linear() -> nn.Linear:  # PyTorch's default Linear init, drawn from the run's generator only
            lin = nn.utils.skip_init(nn.Linear, text_width, vision_width)
            nn.init.kaiming_uniform_(lin.weight, a=5**0.5, generator=generator)
            nn.init.uniform_(lin.bias, -(text_width**-0.5), text_width**-0.5, generator=generator)
            return lin.to(self.ctx.device)

        first, deep = linear(), linear()
        self.couplings = nn.ModuleList([first, *[copy.deepcopy(deep) for _ in range(self.depth - 1)]])

    def learned_parameters(self) -> list[nn.Parameter]:
        return [self.ctx, *self.text_prompts, *self.couplings.parameters()]

    def vision_prompt_list(self) -> list[torch.Tensor]:
        text = [self.ctx, *self.text_prompts]
        return [coupling(p) for coupling, p in zip(self.couplings, text)]

    def meta(self) -> dict:
        meta = PromptLearner.meta(self)
        return {**meta, "deep": {"depth": self.depth}, "coupled": True}
