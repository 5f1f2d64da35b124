"""Zero-shot CLIP classifier from one hand-crafted template per dataset."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from prograd_pl.models.backbone import Backbone
from prograd_pl.models.prompt_learner import classname_text
from prograd_pl.models.text_encoder import PromptTextEncoder


@torch.no_grad()
def zeroshot_text_features(
    backbone: Backbone, classnames: Sequence[str], template: str, chunk: int = 256
) -> torch.Tensor:
    """L2-normalised fp32 text features ``[n_cls, dim]`` of ``template.format(classname)`` for every class."""
    encoder = PromptTextEncoder(backbone.text)
    prompts = [template.format(classname_text(c)) for c in classnames]
    device = backbone.text.token_embedding.weight.device
    feats = []
    for start in range(0, len(prompts), chunk):
        ids = backbone.tokenizer(prompts[start : start + chunk]).to(device)
        feats.append(encoder.encode_tokens(ids, truncate=True).float())
    return F.normalize(torch.cat(feats), dim=-1)
