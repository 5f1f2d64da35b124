"""Lightning components built from the config with ``hydra.utils.instantiate``: trainer, callbacks, loggers,
datamodule and the method's LightningModule."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ProgressBar
from omegaconf import DictConfig

from prograd_pl.app.identity import flatten, method_label


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """Every node of ``cfg.callbacks`` that names a ``_target_``."""
    return [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node and "_target_" in node]


def build_loggers(cfg: DictConfig, run_dir: Path, tags: dict[str, Any]) -> list:
    """The loggers of ``cfg.logger`` (partials) with the run folder as their ``save_dir``; the resolved config is
    logged as their hyperparameters, so W&B runs can be grouped and filtered by any option."""
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if not node or "_target_" not in node:
            continue
        extra: dict[str, Any] = {}
        if str(node._target_).endswith("WandbLogger"):
            extra["name"] = f"{tags['method']}-{tags['dataset']}-{tags['shots']}shot-seed{tags['seed']}"
            if node.get("group") is None:
                extra["group"] = f"{tags['setting']}-{tags['dataset']}-{tags['method']}-{tags['backbone']}"
            extra["tags"] = [f"{k}:{v}" for k, v in tags.items()] + list(node.get("tags") or [])
        logger = instantiate(node)(save_dir=str(run_dir), **extra)
        loggers.append(logger)
    return loggers


def log_config(loggers: Sequence, config: dict[str, Any]) -> None:
    flat = {k: v for k, v in flatten(config).items() if not k.endswith(("_target_", "_partial_"))}
    for logger in loggers:
        logger.log_hyperparams(flat)


def build_trainer(cfg: DictConfig, loggers: list, callbacks: list[Callback]) -> L.Trainer:
    """Lightning's Trainer from ``cfg.trainer``.  Lightning runs 32-true: the method does its own autocast of the
    frozen towers and keeps what it learns in fp32 (``trainer.precision`` reaches it through the method config)."""
    return instantiate(
        cfg.trainer, precision="32-true", logger=loggers or False, callbacks=callbacks,
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
    )  # fmt: skip


def build_datamodule(cfg: DictConfig, train: Sequence, test: Sequence, backbone: Any) -> L.LightningDataModule:
    """The datamodule of ``cfg.data`` for these image lists, at the backbone's image size and normalisation."""
    return instantiate(cfg.data)(train=list(train), test=list(test), image_size=backbone.image_size,
                                 mean=backbone.mean, std=backbone.std)  # fmt: skip


def build_method(cfg: DictConfig, backbone: Any, classnames: Sequence[str], seed: int, prompt: Any = None):
    """The method's LightningModule from ``cfg.method`` (a partial factory); ``prompt`` replaces the configured
    prompt learner (a context restored from a checkpoint)."""
    factory = instantiate(cfg.method)
    kwargs: dict[str, Any] = {"seed": seed}
    if prompt is not None:
        kwargs["prompt"] = prompt
    return factory(backbone, list(classnames), **kwargs)


def run_tags(cfg: DictConfig, shots: int) -> dict[str, Any]:
    return {"setting": cfg.setting, "dataset": cfg.dataset.name, "method": method_label(cfg.method),
            "backbone": cfg.model.name, "shots": shots, "seed": int(cfg.seed)}  # fmt: skip
