"""Lightning components built from the config with ``hydra.utils.instantiate``: trainer, callbacks, loggers,
datamodule and the method's LightningModule."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ProgressBar
from omegaconf import DictConfig

from prograd_pl.app.devices import job_devices, lightning_precision
from prograd_pl.app.identity import flatten, method_label
from prograd_pl.app.logs import drop_lightning_handlers
from prograd_pl.results.aggregate import harmonic_mean
from prograd_pl.results.wandb_upload import sweep_group


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """Every node of ``cfg.callbacks`` that names a ``_target_``. Lightning is imported by now, so its own console
    handler is dropped here: its records reach the app's one console stream once (:mod:`prograd_pl.app.logs`)."""
    drop_lightning_handlers()
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
                extra["group"] = sweep_group(tags["setting"], tags["backbone"])
            extra["tags"] = [f"{k}:{v}" for k, v in tags.items()] + list(node.get("tags") or [])
        logger = instantiate(node)(save_dir=str(run_dir), **extra)
        loggers.append(logger)
    return loggers


def metric_prefix(setting: str, own_dataset: str, eval_dataset: str, subsample: str) -> str:
    """The metric name prefix of one evaluated target: ``test/base`` and ``test/new`` (base-to-new), else
    ``test/<dataset>`` (the training dataset and each DG / cross-dataset target)."""
    if setting == "base2new" and eval_dataset == own_dataset:
        return f"test/{subsample}"
    return f"test/{eval_dataset}"


def finish_loggers(loggers: Sequence, records: Sequence[dict[str, Any]], setting: str) -> None:
    """Log every target's accuracy under its own name, plus the harmonic mean ``test/H`` of a base-to-new run, then
    close the loggers: a W&B run is finished, so the next job of a sweep in the same process starts its own."""
    metrics: dict[str, float] = {}
    for rec in records:
        prefix = metric_prefix(setting, records[0]["dataset"], rec["eval_dataset"], rec["subsample"])
        metrics[f"{prefix}/acc"] = float(rec["metrics"]["acc"])
    base, new = metrics.get("test/base/acc"), metrics.get("test/new/acc")
    if base is not None and new is not None:
        metrics["test/H"] = harmonic_mean(base, new)
    for logger in loggers:
        logger.log_metrics(metrics)
        logger.finalize("success")
        if type(logger).__name__ == "WandbLogger" and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish()


def log_config(loggers: Sequence, config: dict[str, Any]) -> None:
    flat = {k: v for k, v in flatten(config).items() if not k.endswith(("_target_", "_partial_"))}
    for logger in loggers:
        logger.log_hyperparams(flat)


def build_trainer(cfg: DictConfig, loggers: list, callbacks: list[Callback]) -> L.Trainer:
    """Lightning's Trainer from ``cfg.trainer``, with Lightning's precision plugin for ``trainer.precision`` (its
    GradScaler for ``16-mixed``); the method runs the frozen towers as copies cast once to that precision and keeps
    what it learns in fp32 (the precision reaches it through the method config too).  A job of a local parallel
    sweep that asks for one GPU gets one of its own (:func:`devices.job_devices`)."""
    return instantiate(
        cfg.trainer, devices=job_devices(cfg), precision=lightning_precision(cfg), logger=loggers or False,
        callbacks=callbacks,
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
    )  # fmt: skip


def single_process_evaluation(trainer: L.Trainer, cfg: DictConfig, loggers: Sequence) -> L.Trainer:
    """The trainer to evaluate with: ``trainer`` itself on one process; after a multi-process fit, rank 0 gets a
    one-device trainer on its own device and every other rank exits (status 0)."""
    if trainer.world_size <= 1:
        return trainer
    dist = torch.distributed
    rank = trainer.global_rank
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if rank != 0:
        sys.exit(0)
    from hydra.utils import instantiate
    from lightning.fabric.plugins.environments import LightningEnvironment

    device = trainer.strategy.root_device
    callbacks = build_callbacks(cfg)
    return instantiate(
        cfg.trainer, devices=[device.index] if device.type == "cuda" else 1, strategy="auto", num_nodes=1,
        precision=lightning_precision(cfg), logger=list(loggers) or False, callbacks=callbacks,
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks), plugins=[LightningEnvironment()],
    )  # fmt: skip


def build_datamodule(cfg: DictConfig, train: Sequence, test: Sequence, backbone: Any) -> L.LightningDataModule:
    """The datamodule of ``cfg.data`` for these image lists, at the backbone's image size and normalisation."""
    return instantiate(cfg.data)(train=list(train), test=list(test), image_size=backbone.image_size,
                                 mean=backbone.mean, std=backbone.std)  # fmt: skip


def build_method(cfg: DictConfig, backbone: Any, classnames: Sequence[str], seed: int, prompt: Any = None):
    """What ``cfg.method`` describes (:func:`prograd_pl.methods.build.build`): the LightningModule around the
    method's class, or the linear probe's pipeline; ``prompt`` replaces the configured prompt learner (a context
    restored from a checkpoint)."""
    from prograd_pl.methods.build import build

    return build(cfg.method, backbone, classnames, seed, prompt=prompt)


def run_tags(cfg: DictConfig, shots: int) -> dict[str, Any]:
    return {"setting": cfg.setting, "dataset": cfg.dataset.name, "method": method_label(cfg.method),
            "backbone": cfg.model.name, "shots": shots, "seed": int(cfg.seed)}  # fmt: skip
