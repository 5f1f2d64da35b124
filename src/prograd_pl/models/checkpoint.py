"""What was learned, on disk: ``prompt_learner.pt`` = ``{"ctx", "learned", "meta"}``, never the frozen CLIP weights.

Loaded with ``weights_only=True`` (no code runs from a file); shared by the run (``ckpt=``) and ``interpret``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

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


def check_matches(blob: dict[str, Any], path: str | Path, method: str, prompt: Mapping[str, Any] | None,
                  classnames: Sequence[str], classes: str = "check") -> None:  # fmt: skip
    """Refuse a checkpoint that does not fit the requested run: another method, another context length or
    class-specific setting, or (class-specific contexts) other classes unless ``classes='ignore'`` (used by index)."""
    meta = blob["meta"]
    saved = meta.get("method")
    if saved is not None and saved != method:
        raise ConfigError(f"ckpt={path} was trained with method={saved}, not method={method}; pass method={saved}.")
    for key in ("n_ctx", "csc"):
        want = None if prompt is None else prompt.get(key)
        if key in meta and want is not None and meta[key] != want:
            value = str(meta[key]).lower() if isinstance(meta[key], bool) else meta[key]
            raise ConfigError(f"ckpt={path} has method.prompt.{key}={value}, not {want!r}; pass "
                              f"method.prompt.{key}={value}.")  # fmt: skip
    if meta.get("csc") and classes != "ignore":
        saved_names = list(meta.get("classnames") or [])
        if saved_names != list(classnames):
            differ = next((f"'{a}' vs '{b}'" for a, b in zip(saved_names, classnames) if a != b),
                          f"{len(saved_names)} vs {len(classnames)} classes")  # fmt: skip
            raise ConfigError(f"ckpt={path} holds class-specific contexts of other classes ({differ}); pass "
                              "ckpt_classes=ignore to use them by class index.")  # fmt: skip


def checkpoint_payload(learner: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint stores: ``ctx`` (as before), every learned tensor by name, and the rebuild options."""
    state = learner.learned_state()
    return {"ctx": state["ctx"], "learned": state, "meta": {**learner.meta(), **meta}}


def save_checkpoint(path: str | Path, learner: Any, meta: dict[str, Any]) -> None:
    """Only what was learned (``ctx``, and by name every learned tensor) and what rebuilds the prompt; atomic."""
    blob = checkpoint_payload(learner, {**meta, "format": CHECKPOINT_FORMAT})
    with atomic_open(Path(path), "wb") as fh:
        torch.save(blob, fh)


def learner_from_checkpoint(blob: Mapping[str, Any], backbone: Any, classnames: Sequence[str], template: str):
    """Rebuild the prompt learner of a checkpoint (CoOp context, CoCoOp context + meta-net, or deep prompts) for
    ``classnames`` and load what it learned. The template follows the target dataset when the context was initialised from a
    template, as in the reference. Checkpoints with only ``ctx`` (written before ``learned`` existed) load too."""
    from prograd_pl.models.conditional_prompt import ConditionalPromptLearner
    from prograd_pl.models.prompt_learner import PromptLearner

    meta = blob["meta"]
    init = meta["init"]
    names = classnames if not meta["csc"] else meta["classnames"]
    common = dict(
        n_ctx=meta["n_ctx"], init=init, template=template if init == "template" else meta["template"],
        phrase=meta.get("phrase"), position=meta["position"], csc=meta["csc"],
    )  # fmt: skip
    if meta.get("conditional"):
        learner = ConditionalPromptLearner(backbone, names, hidden_ratio=meta.get("hidden_ratio", 16), **common)
    elif meta.get("deep"):
        from prograd_pl.models.deep_prompt import CoupledPromptLearner, DeepPromptLearner

        cls = CoupledPromptLearner if meta.get("coupled") else DeepPromptLearner
        learner = cls(backbone, names, **common, **meta["deep"])
    else:
        learner = PromptLearner(backbone, names, **common)
    state = blob.get("learned") or {"ctx": blob["ctx"]}
    if "ctx" in state and learner.ctx.shape != state["ctx"].shape:
        raise ConfigError(
            f"checkpoint context has shape {tuple(state['ctx'].shape)}, expected {tuple(learner.ctx.shape)} "
            f"(n_ctx={meta['n_ctx']}, csc={meta['csc']})."
        )
    learner.load_learned_state({k: v.float() for k, v in state.items()})
    if meta["csc"] and list(classnames) != list(meta["classnames"]):
        learner.set_classnames(classnames)
    return learner
