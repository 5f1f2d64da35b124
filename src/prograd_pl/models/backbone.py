"""Loading a frozen open_clip model whose text tower can take prompt embeddings, and its fast image pass."""

from __future__ import annotations

import copy
import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from prograd_pl.errors import BackboneError

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


# ---- the frozen image pass ----------------------------------------------------------------------------------
@dataclass
class ImagePassOptions:
    """How a frozen image tower runs when no gradient is asked of it.

    ``fast``: BatchNorm folded into the preceding convolutions (ModifiedResNet), channels-last memory format and
    ``torch.inference_mode`` -- the same function up to float summation order.  ``bf16``: a bfloat16 copy of the
    weights (not exact; features returned in fp32).  ``compile``: ``torch.compile`` the pass (first call compiles).
    """

    fast: bool = True
    bf16: bool = False
    compile: bool = False


# the prepared (folded / channels-last / compiled) copy of each tower, outside the module so that state_dict,
# deepcopy and checkpoints see only open_clip's own parameters
_prepared: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def fold_batchnorm(visual: nn.Module) -> nn.Module:
    """A copy of ``visual`` with each eval-mode BatchNorm2d folded into the convolution before it.

    Handles open_clip's ModifiedResNet layout: ``convK``/``bnK`` pairs in the stem and the bottlenecks and the
    ``(avgpool, conv, bn)`` downsample branches.  Parameters of other modules (attention pool) are shared.
    """
    shared = {id(t): t for name, t in [*visual.named_parameters(), *visual.named_buffers()] if "attnpool" in name}
    folded = copy.deepcopy(visual, memo=dict(shared))
    folded.__class__ = _open_clip_class(folded)  # a plain module: its forward is open_clip's
    for module in folded.modules():
        children = dict(module.named_children())
        pairs = [(f"conv{k}", f"bn{k}") for k in range(1, 4)]
        if isinstance(module, nn.Sequential):
            names = list(children)
            pairs += list(zip(names, names[1:]))
        for conv_name, bn_name in pairs:
            conv, bn = children.get(conv_name), children.get(bn_name)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                if bn.training:
                    raise BackboneError("BatchNorm can only be folded in eval mode (running statistics).")
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
    return folded.requires_grad_(False)


class FrozenImagePass:
    """Mixin for an open_clip image tower: a faster, equivalent forward when no gradient can flow.

    The module tree, parameters and state_dict stay those of open_clip (checkpoints and weight loading are
    unchanged, BatchNorm statistics are still there); in training mode or for inputs that require grad the
    original forward runs.  The prepared copy follows the weights: it is rebuilt after any change of device,
    dtype or values of the tower's tensors (``.to()`` drops it; in-place changes show in the tensors' version
    counters, summed over a list of the tensors kept with the copy, not rebuilt per call).
    """

    image_pass: ImagePassOptions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_frozen(x, torch.bfloat16 if self.image_pass.bf16 else None)

    def forward_frozen(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The tower on ``x``; ``dtype`` (e.g. ``torch.bfloat16``) runs a copy of the weights cast once to it
        (not autocast, which casts the weights again at every call); features are returned in fp32."""
        options = self.image_pass
        if self.training or (torch.is_grad_enabled() and x.requires_grad) or not (
            options.fast or dtype is not None or options.compile
        ):
            return super().forward(x)
        run = self._prepared_pass(dtype)
        if options.fast and isinstance(self, ModifiedResNet):
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(options.fast):
            out = run(x if dtype is None else x.to(dtype))
        # a normal tensor again: inference tensors cannot be saved for a later backward
        return out.clone() if dtype is None else out.float()

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .half(): the prepared copies are stale
        _prepared.pop(self, None)
        return super()._apply(fn, recurse)

    def _prepared_pass(self, dtype: torch.dtype | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        copies = _prepared.setdefault(self, {})
        hit = copies.get(dtype)
        if hit is not None:
            key, tensors, run = hit
            if key == (self.image_pass, sum(t._version for t in tensors)):
                return run
        tensors = [*self.parameters(), *self.buffers()]
        base, me = _open_clip_class(self), weakref.ref(self)
        if self.image_pass.fast and isinstance(self, ModifiedResNet):
            run: Callable = fold_batchnorm(self).to(memory_format=torch.channels_last)
            if dtype is not None:  # a full copy first: the folded one shares the attention pool's weights
                run = copy.deepcopy(run).to(dtype)
        elif dtype is not None:
            run = copy.deepcopy(self).requires_grad_(False).to(dtype)
            run.__class__ = base
        else:

            def run(x: torch.Tensor) -> torch.Tensor:
                return base.forward(me(), x)

        if self.image_pass.compile:
            run = torch.compile(run)
        copies[dtype] = ((self.image_pass, sum(t._version for t in tensors)), tensors, run)
        return run


def _open_clip_class(module: nn.Module) -> type:
    """The class ``module`` had before :func:`configure_image_pass` (itself if it was never configured)."""
    mro = type(module).__mro__
    return mro[mro.index(FrozenImagePass) + 1] if FrozenImagePass in mro else type(module)


class FrozenModifiedResNet(FrozenImagePass, ModifiedResNet):
    """open_clip's ModifiedResNet with the fast frozen image pass (BatchNorm folded, channels-last)."""


class FrozenVisionTransformer(FrozenImagePass, VisionTransformer):
    """open_clip's VisionTransformer with the fast frozen image pass (inference mode, options)."""


_FROZEN_CLASSES = {ModifiedResNet: FrozenModifiedResNet, VisionTransformer: FrozenVisionTransformer}


def configure_image_pass(
    model: nn.Module, fast: bool = True, bf16: bool = False, compile: bool = False
) -> ImagePassOptions | None:
    """Set how ``model.visual`` runs without gradients (see :class:`ImagePassOptions`); returns the options.

    Towers other than open_clip's ModifiedResNet / VisionTransformer are left as they are (returns None).
    """
    visual = getattr(model, "visual", None)
    frozen = _FROZEN_CLASSES.get(_open_clip_class(visual)) if visual is not None else None
    if frozen is None:
        return None
    visual.__class__ = frozen
    visual.image_pass = ImagePassOptions(fast=fast, bf16=bf16, compile=compile)
    _prepared.pop(visual, None)
    return visual.image_pass


def resolve_pretrained(pretrained: str | None) -> str | None:
    """``model.pretrained`` as open_clip takes it: None for random weights, the mini weights file for ``mini:``
    (see :mod:`prograd_pl.models.weights`)."""
    from prograd_pl.models.weights import resolve_pretrained as resolve

    return resolve(pretrained)


def load_backbone(
    name: str,
    pretrained: str | None,
    device: str | torch.device = "cpu",
    *,
    fast_image: bool = True,
    image_bf16: bool = False,
    image_compile: bool = False,
) -> Backbone:
    """Build open_clip model ``name`` with weights ``pretrained`` (tag, local file, or None), frozen in eval mode.

    ``pretrained='mini:'`` means the project's own pretrained mini model file.  ``fast_image``, ``image_bf16``
    and ``image_compile`` set the frozen image pass (:func:`configure_image_pass`); the default is the exact
    fast path.
    """
    register_model_configs()
    if name not in open_clip.list_models():
        raise BackboneError(
            f"model.name='{name}' is not an open_clip architecture; expected one of open_clip.list_models() "
            "(e.g. RN50-quickgelu, ViT-B-16) or this project's prograd-tiny / prograd-mini."
        )
    from prograd_pl.models.weights import create_model

    weights = resolve_pretrained(pretrained)
    model = create_model(name, pretrained, device=device)  # checks files and tags before loading anything
    model.eval()
    model.requires_grad_(False)
    configure_image_pass(model, fast=fast_image, bf16=image_bf16, compile=image_compile)
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
        mean=tuple(pcfg.get("mean", OPENAI_DATASET_MEAN)),
        std=tuple(pcfg.get("std", OPENAI_DATASET_STD)),
        text=tower,
    )
