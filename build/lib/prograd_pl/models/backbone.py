"""Loading a frozen open_clip model whose text tower can take prompt embeddings."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import nn

from prograd_pl.errors import BackboneError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
_registered = False




def register_model_configs() -> None:
    """Add the project's architectures (``models/model_configs/*.json``) to open_clip's registry."""
    global _registered
    if not _registered:
        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered = True


class TextTower:
    """View of the pieces of a standard CLIP text tower that prompt learning needs.

    Attributes are read from the owning module on every access, so they follow ``.to(device)``.
    """

    def __init__(self, module: nn.Module, pool_type: str, eos_id: int | None) -> None:
        self.module = module
        self.pool_type = pool_type
        self.eos_id = eos_id

    token_embedding = property(lambda self: self.module.token_embedding)
    positional_embedding = property(lambda self: self.module.positional_embedding)
    transformer = property(lambda self: self.module.transformer)
    ln_final = property(lambda self: self.module.ln_final)
    text_projection = property(lambda self: self.module.text_projection)
    attn_mask = property(lambda self: getattr(self.module, "attn_mask", None))

    @property
    def width(self) -> int:
        return self.token_embedding.weight.shape[1]

    @property
    def context_length(self) -> int:
        return self.positional_embedding.shape[0]


@dataclass
class Backbone:
    """A frozen open_clip model with its tokenizer and preprocessing facts."""

    model: nn.Module
    tokenizer: Any
    name: str
    pretrained: str | None
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    text: TextTower

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())


def text_tower(model: nn.Module, name: str = "model") -> TextTower:
    """Return the standard CLIP text tower of ``model``; refuse towers that cannot take embeddings."""
    tower = model if hasattr(model, "token_embedding") else getattr(model, "text", None)
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    if tower is None or not all(hasattr(tower, a) for a in needed):
        raise BackboneError(
            f"backbone '{name}' has a text tower ({type(tower).__name__}) that cannot take prompt embeddings; "
            "prompt tuning needs open_clip's standard CLIP text transformer (Hugging Face text towers are not "
            "supported)."
        )
    if getattr(tower, "cls_emb", None) is not None:
        raise BackboneError(f"backbone '{name}' appends a CLS embedding to its text (CoCa-style); not supported.")
    pool = getattr(tower, "text_pool_type", getattr(tower, "pool_type", "argmax"))
    if pool not in ("argmax", "eos"):
        raise BackboneError(
            f"backbone '{name}' pools text with '{pool}'; prompt tuning needs EOT pooling ('argmax' or 'eos')."
        )
    eos_id = getattr(tower, "text_eos_id", getattr(tower, "eos_id", None)) if pool == "eos" else None
    return TextTower(tower, pool, eos_id)


def _resolve_pretrained(pretrained: str | None) -> str | None:
    if pretrained in (None, "", "none", "None"):
        return None
    if pretrained.startswith("mini:"):
        from prograd_pl.mini.weights import mini_weights_path

        return str(mini_weights_path())
    return pretrained


def load_backbone(name: str, pretrained: str | None, device: str | torch.device = "cpu") -> Backbone:
    """Build open_clip model ``name`` with weights ``pretrained`` (tag, local file, or None), frozen in eval mode.

    ``pretrained='mini:'`` means the project's own pretrained mini model file.
    """
    register_model_configs()
    if name not in open_clip.list_models():
        raise BackboneError(
            f"model.name='{name}' is not an open_clip architecture; expected one of open_clip.list_models() "
            "(e.g. RN50-quickgelu, ViT-B-16) or this project's prograd-tiny / prograd-mini."
        )
    weights = _resolve_pretrained(pretrained)
    if weights is not None and (os.sep in weights or weights.endswith((".pt", ".pth", ".bin", ".safetensors"))):
        if not Path(weights).is_file():
            raise BackboneError(f"model.pretrained='{weights}' is not a file; expected a local checkpoint path.")
    try:
        model = open_clip.create_model(name, pretrained=weights, device=device)
    except RuntimeError as err:
        if weights is not None and not Path(weights).is_file():
            raise BackboneError(
                f"could not obtain weights '{weights}' for model '{name}' (no network or unknown tag); download "
                f"them elsewhere and pass the local file with model.pretrained=/path/to/weights.pt."
            ) from err
        raise
    model.eval()
    model.requires_grad_(False)
    tower = text_tower(model, name)
    tokenizer = open_clip.get_tokenizer(name)
    pcfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    if weights is None:
        logging.getLogger(__name__).info("backbone %s has random weights (pretrained=None)", name)
    return Backbone(
        model=model,
        tokenizer=tokenizer,
        name=name,
        pretrained=pretrained,
        image_size=size,
        mean=tuple(pcfg.get("mean", CLIP_MEAN)),
        std=tuple(pcfg.get("std", CLIP_STD)),
        text=tower,
    )
