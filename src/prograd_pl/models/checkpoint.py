"""The learned context on disk: ``prompt_learner.pt`` = ``{"ctx", "meta"}``, never the frozen CLIP weights.

Loaded with ``weights_only=True`` (no code runs from a file); shared by the run (``ckpt=``) and ``interpret``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from prograd_pl.atomic import atomic_open
from prograd_pl.errors import ConfigError

CHECKPOINT_NAME = "prompt_learner.pt"
CHECKPOINT_FORMAT = 1


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file, or the ``prompt_learner.pt`` of a run folder."""
    p = Path(path)
    return p / CHECKPOINT_NAME if p.is_dir() else p


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``{"ctx": Tensor, "meta": dict}`` from a file or run folder; ConfigError naming the file on any problem."""
    p = checkpoint_file(path)
    if not p.is_file():
        raise ConfigError(f"ckpt={p} does not exist; expected a {CHECKPOINT_NAME} written by a training run or its folder.")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same sentence
        raise ConfigError(f"ckpt={p} is not a prograd_pl context checkpoint ({type(err).__name__}).") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("ctx"), torch.Tensor) or not isinstance(blob.get("meta"), dict):
        raise ConfigError(f"ckpt={p} is not a prograd_pl context checkpoint (expected the keys 'ctx' and 'meta').")
    if blob["meta"].get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"ckpt={p} has checkpoint format {blob['meta'].get('format')!r}; this version reads {CHECKPOINT_FORMAT}.")
    return blob


def check_fits(blob: dict[str, Any], path: str | Path, backbone_name: str, text_width: int) -> None:
    """Refuse a checkpoint trained on another backbone."""
    meta = blob["meta"]
    if meta.get("backbone") != backbone_name:
        raise ConfigError(f"ckpt={path} was trained on backbone '{meta.get('backbone')}', not model.name='{backbone_name}'.")
    if blob["ctx"].shape[-1] != text_width:
        raise ConfigError(f"ckpt={path} has context width {blob['ctx'].shape[-1]}, the backbone's text width is {text_width}.")


def save_checkpoint(path: str | Path, learner: Any, meta: dict[str, Any]) -> None:
    """Only what was learned (``ctx``, and by name every learned tensor) and what rebuilds the prompt; atomic."""
    from prograd_pl.models.learners import checkpoint_payload

    blob = checkpoint_payload(learner, {**meta, "format": CHECKPOINT_FORMAT})
    with atomic_open(Path(path), "wb") as fh:
        torch.save(blob, fh)


def learner_from_checkpoint(blob: dict[str, Any], backbone: Any, classnames: Sequence[str], template: str):
    """Rebuild the prompt learner of a checkpoint (CoOp context or CoCoOp context + meta-net) for ``classnames``
    (the template follows the target dataset when the context was initialised from a template, as in the
    reference)."""
    from prograd_pl.models import learners
    from prograd_pl.models.prompt_learner import PromptError

    try:
        return learners.learner_from_checkpoint(blob, backbone, classnames, template)
    except PromptError as err:
        raise ConfigError(str(err)) from None
