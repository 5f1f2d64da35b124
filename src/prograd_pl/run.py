"""One run: build data, model and trainer from the config; fit; evaluate; write ``results.json``."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

import prograd_pl
from prograd_pl.atomic import atomic_open
from prograd_pl.data.base import DatasetError, DatasetSplits
from prograd_pl.data.base2new import subsample_classes
from prograd_pl.data.datamodule import FewShotDataModule
from prograd_pl.data.fewshot import fewshot_split
from prograd_pl.data.registry import get_dataset_info, load_dataset
from prograd_pl.methods.module import METHODS, PRECISIONS, PromptTuningModule
from prograd_pl.models.backbone import Backbone, load_backbone
from prograd_pl.models.feature_cache import FeatureCache, weights_fingerprint
from prograd_pl.models.prompt_learner import PromptLearner
from prograd_pl.results.store import is_finished, read_results, run_folder, write_results

log = logging.getLogger("prograd_pl")

SETTINGS = ("fewshot", "base2new", "dg", "xd")
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
XD_TARGETS = (
    "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
)  # fmt: skip
LAMBDA_08 = ("oxford_flowers", "dtd", "eurosat")
CHECKPOINT_NAME = "prompt_learner.pt"
CHECKPOINT_FORMAT = 1
# Overrides that do not change what a run computes, so they do not name its folder.
NEUTRAL_KEYS = (
    "dataset", "model", "method", "shots", "seed", "setting", "data_root", "output_root", "trainer", "logger",
    "redo", "feature_cache", "cache_root", "experiment", "eval_datasets", "ckpt",
    "trainer.accelerator", "trainer.devices", "trainer.strategy", "trainer.num_workers", "trainer.progress_bar",
    "trainer.test_batch_size", "trainer.deterministic", "trainer.threads", "model.name", "model.pretrained", "method.name",
)  # fmt: skip


class ConfigError(ValueError):
    """An option with a value that cannot work."""


# ---- recipe -------------------------------------------------------------------------------------------------
def recipe_epochs(dataset: str, shots: int) -> int:
    """Epochs of the paper's recipe (spec §3.2): ImageNet 50; 1 shot 50; 2-4 shots 100; more 200."""
    if dataset == "imagenet" or shots <= 1:
        return 50
    return 100 if shots <= 4 else 200


def recipe_lambda(dataset: str, shots: int) -> float:
    """ProGrad's lambda (spec §3.3): 0.8 for 8/16 shots on Flowers102, DTD and EuroSAT, else 1.0."""
    return 0.8 if dataset in LAMBDA_08 and shots >= 8 else 1.0


def resolve_options(cfg: DictConfig) -> dict[str, Any]:
    """Check the config and fill the recipe's defaults; raises one clear sentence per problem."""
    method = cfg.method.name
    if method not in METHODS:
        raise ConfigError(f"method.name='{method}' is not one of {', '.join(METHODS)}.")
    if cfg.setting not in SETTINGS:
        raise ConfigError(f"setting='{cfg.setting}' is not one of {', '.join(SETTINGS)}.")
    shots = cfg.shots
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ConfigError(f"shots must be an integer >= 1 (labelled images per class), got shots={shots!r}.")
    dataset = cfg.dataset.name
    info = get_dataset_info(dataset)
    if info.test_only and method != "zeroshot" and cfg.ckpt is None:
        raise ConfigError(
            f"dataset={dataset} is test-only; train on imagenet with setting=dg to evaluate on it, or pass ckpt=."
        )
    precision = str(cfg.trainer.precision)
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision='{precision}' is not one of {', '.join(PRECISIONS)}.")
    epochs = cfg.trainer.max_epochs if cfg.trainer.max_epochs is not None else recipe_epochs(dataset, shots)
    if not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"trainer.max_epochs must be an integer >= 0, got {epochs!r}.")
    lam = cfg.method.lam
    if lam is None:
        lam = recipe_lambda(dataset, shots) if method == "prograd" else 0.0
    if method == "zeroshot" or cfg.ckpt is not None:
        epochs = 0
    targets = eval_targets(cfg)
    for name, _ in targets:
        get_dataset_info(name)
    return {"dataset": dataset, "info": info, "method": method, "shots": shots, "epochs": epochs,
            "lam": float(lam), "precision": precision, "targets": targets}  # fmt: skip


def eval_targets(cfg: DictConfig) -> list[tuple[str, str]]:
    """The (dataset, subsample) pairs evaluated besides the training dataset's own test split."""
    dataset = cfg.dataset.name
    if cfg.setting == "base2new":
        return [(dataset, "new")]
    if cfg.setting in ("dg", "xd"):
        names = cfg.eval_datasets
        if names is None:
            names = DG_TARGETS if cfg.setting == "dg" else [d for d in XD_TARGETS if d != dataset]
        return [(str(n), "all") for n in names]
    if cfg.eval_datasets:
        return [(str(n), "all") for n in cfg.eval_datasets]
    return []


def folder_extras(overrides: Sequence[str]) -> dict[str, str]:
    """Non-default options (from the command-line overrides) that change a run's result and name its folder."""
    extras = {}
    for item in overrides:
        if "=" not in item:
            continue
        key, value = item.split("=", 1)
        key = key.lstrip("+~")
        if key.startswith("hydra") or key in NEUTRAL_KEYS or key.startswith("logger."):
            continue
        extras[key.replace("method.", "").replace("trainer.", "").replace("prompt.", "")] = value
    return extras


# ---- building blocks ----------------------------------------------------------------------------------------
def template_for(info, cfg: DictConfig) -> str:
    if cfg.method.get("template_source", "prograd") == "coop":
        return info.coop_template
    return info.template


def build_prompt_learner(cfg: DictConfig, backbone: Backbone, classnames, template: str, seed: int):
    if cfg.method.name == "zeroshot":
        return None
    p = cfg.method.prompt
    gen = torch.Generator().manual_seed(seed)
    return PromptLearner(
        backbone, classnames, n_ctx=p.n_ctx, init=p.init, template=template, phrase=p.phrase, csc=p.csc,
        position=p.position, generator=gen,
    )  # fmt: skip


def load_checkpoint(path: str | Path, backbone: Backbone) -> dict:
    """Read a saved context (``prompt_learner.pt`` or a run folder holding one) and check it fits ``backbone``."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise ConfigError(f"ckpt={path} does not exist; expected a {CHECKPOINT_NAME} written by a training run.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta, ctx = blob["meta"], blob["ctx"]
    except Exception as err:
        raise ConfigError(f"ckpt={path} is not a prograd_pl context checkpoint ({err}).") from err
    if meta.get("backbone") != backbone.name:
        raise ConfigError(
            f"ckpt={path} was trained on backbone '{meta.get('backbone')}', not model.name='{backbone.name}'."
        )
    if ctx.shape[-1] != backbone.text.width:
        raise ConfigError(
            f"ckpt={path} has context width {ctx.shape[-1]}, the backbone's text width is {backbone.text.width}."
        )
    return blob


def save_checkpoint(path: Path, learner: PromptLearner, meta: dict) -> None:
    """Only the learned context and what rebuilds the prompt; written atomically."""
    with atomic_open(path, "wb") as fh:
        torch.save({"ctx": learner.ctx.detach().cpu().clone(), "meta": {**learner.meta(), **meta}}, fh)


def prompt_from_checkpoint(blob: dict, backbone: Backbone, classnames, template: str) -> PromptLearner:
    meta = blob["meta"]
    init = meta["init"]
    learner = PromptLearner(
        backbone, classnames if not meta["csc"] else meta["classnames"], n_ctx=meta["n_ctx"],
        init=init, template=template if init == "template" else meta["template"], phrase=meta.get("phrase"),
        csc=meta["csc"], position=meta["position"],
    )  # fmt: skip
    if learner.ctx.shape != blob["ctx"].shape:
        raise ConfigError(
            f"checkpoint context has shape {tuple(blob['ctx'].shape)}, expected {tuple(learner.ctx.shape)} "
            f"(n_ctx={meta['n_ctx']}, csc={meta['csc']})."
        )
    learner.ctx.data.copy_(blob["ctx"].float())
    if meta["csc"] and list(classnames) != list(meta["classnames"]):
        learner.set_classnames(classnames)
    return learner


def make_logger(cfg: DictConfig, run_dir: Path, tags: dict[str, Any]):
    kind = cfg.logger.kind
    if kind == "none":
        return False
    if kind == "csv":
        return L.pytorch.loggers.CSVLogger(save_dir=str(run_dir), name="logs")
    if kind == "tensorboard":
        return L.pytorch.loggers.TensorBoardLogger(save_dir=str(run_dir), name="tensorboard")
    if kind == "wandb":
        group = cfg.logger.group or f"{tags['setting']}-{tags['dataset']}-{tags['method']}-{tags['backbone']}"
        return L.pytorch.loggers.WandbLogger(
            project=cfg.logger.project, entity=cfg.logger.entity, group=group, save_dir=str(run_dir),
            mode=cfg.logger.mode, name=f"{tags['method']}-{tags['dataset']}-{tags['shots']}shot-seed{tags['seed']}",
            tags=[f"{k}:{v}" for k, v in tags.items()] + list(cfg.logger.tags or []),
        )  # fmt: skip
    raise ConfigError(f"logger.kind='{kind}' is not one of csv, tensorboard, wandb, none.")


def make_trainer(cfg: DictConfig, epochs: int, logger, precision: str) -> L.Trainer:
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    t = cfg.trainer
    bar = t.get("progress_bar", "rich")
    callbacks = []
    if bar == "rich":
        callbacks.append(RichProgressBar(leave=True))
    elif bar == "tqdm":
        callbacks.append(TQDMProgressBar())
    strategy = t.strategy
    if strategy == "ddp":
        from prograd_pl.methods.strategy import PromptDDPStrategy

        strategy = PromptDDPStrategy()
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, strategy=strategy, max_epochs=max(epochs, 1),
        precision="32-true", logger=logger, callbacks=callbacks, enable_checkpointing=False,
        enable_progress_bar=bar != "none", enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=1, deterministic=t.get("deterministic", False), default_root_dir=None,
    )  # fmt: skip


def mixed_dtype(precision: str) -> torch.dtype | None:
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)


# ---- evaluation ---------------------------------------------------------------------------------------------
def evaluate(
    module: PromptTuningModule, trainer: L.Trainer, cfg: DictConfig, splits: DatasetSplits, backbone: Backbone,
    precision: str,
) -> dict[str, Any]:
    """Accuracy of ``module`` on ``splits.test`` (class list = ``splits.classnames``)."""
    if not splits.test:
        raise DatasetError(f"dataset {splits.name} has an empty test split.")
    dm = FewShotDataModule(
        train=[], test=splits.test, image_size=backbone.image_size, mean=backbone.mean, std=backbone.std,
        batch_size=cfg.trainer.batch_size, test_batch_size=cfg.trainer.test_batch_size,
        num_workers=cfg.trainer.num_workers, seed=cfg.seed,
    )  # fmt: skip
    loader = dm.test_dataloader()
    if cfg.feature_cache:
        parts = {
            "backbone": backbone.name, "weights": weights_fingerprint(_weights_file(backbone)),
            "dataset": splits.name, "image_size": backbone.image_size, "mean": backbone.mean, "std": backbone.std,
            "transform": "resize-bicubic+centercrop", "precision": precision, "version": 1,
        }  # fmt: skip
        items = [(d.path, d.label) for d in splits.test]
        cache = FeatureCache(Path(cfg.cache_root) / "features")
        feats, labels, hit = cache.get_or_compute(parts, items, lambda: encode_images(module, loader))
        log.info("test features of %s: %s", splits.name, "from cache" if hit else "encoded and cached")
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(feats, labels), batch_size=cfg.trainer.test_batch_size
        )
    trainer.test(module, dataloaders=loader, verbose=False)
    res = dict(module.test_results)
    res["n_test"] = len(splits.test)
    res["error"] = 100.0 - res["acc"]
    return res


def _weights_file(backbone: Backbone) -> str | None:
    from prograd_pl.models.backbone import _resolve_pretrained

    return _resolve_pretrained(backbone.pretrained)


@torch.no_grad()
def encode_images(module: PromptTuningModule, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen, normalised image features of a whole loader (for the feature cache)."""
    feats, labels = [], []
    device = module.logit_scale.device
    module.eval()
    for images, y in loader:
        feats.append(module.image_features(images.to(device)).cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


# ---- the run ------------------------------------------------------------------------------------------------
def run(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Train (unless zero-shot or ``ckpt``) and evaluate one configuration; returns the results dict.

    A run whose folder already holds a valid ``results.json`` is skipped (``redo=true`` forces it).
    """
    # the frozen towers are in eval mode on purpose (RN50 BatchNorm); Lightning warns about it
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    opts = resolve_options(cfg)
    dataset, method, shots, seed = opts["dataset"], opts["method"], opts["shots"], int(cfg.seed)
    if method == "zeroshot":
        shots = 0  # no training images: one zero-shot result per dataset, whatever shots= says
    extras = folder_extras(overrides)
    run_dir = run_folder(
        cfg.output_root, setting=cfg.setting, dataset=dataset, method=method, backbone=cfg.model.name,
        pretrained=cfg.model.pretrained, shots=shots, seed=seed, extras=extras or None,
    )  # fmt: skip
    if is_finished(run_dir) and not cfg.redo:
        log.info("skipping finished run %s", run_dir)
        return read_results(run_dir / "results.json")
    if cfg.ckpt is not None and not Path(cfg.ckpt).exists():
        raise ConfigError(f"ckpt={cfg.ckpt} does not exist; expected a {CHECKPOINT_NAME} or a run folder.")

    # data first: every bad path or option is reported before the model is built
    data_root = Path(cfg.data_root)
    full = load_dataset(dataset, data_root)
    target_splits = {}
    for name, sub in opts["targets"]:
        base = full if name == dataset else load_dataset(name, data_root)
        target_splits[(name, sub)] = base
    fewshot = full if (opts["info"].test_only or shots == 0) else fewshot_split(full, shots, seed, data_root)
    own_sub = "base" if cfg.setting == "base2new" else "all"
    train_splits = subsample_classes(fewshot, own_sub)
    for name, sub in opts["targets"]:
        if sub != "all":  # base-to-new: the same few-shot split, the other half of the classes
            target_splits[(name, sub)] = subsample_classes(fewshot, sub)

    if cfg.trainer.get("threads"):
        torch.set_num_threads(int(cfg.trainer.threads))
    L.seed_everything(seed, workers=True, verbose=False)
    backbone = load_backbone(cfg.model.name, cfg.model.pretrained)
    template = template_for(opts["info"], cfg)
    blob = load_checkpoint(cfg.ckpt, backbone) if cfg.ckpt is not None else None
    if blob is not None:
        learner = prompt_from_checkpoint(blob, backbone, train_splits.classnames, template)
    else:
        learner = build_prompt_learner(cfg, backbone, train_splits.classnames, template, seed)
    optim = cfg.method.get("optim") or {}
    module = PromptTuningModule(
        backbone, learner, method=method, template=template, lam=opts["lam"],
        temperature=cfg.method.get("temperature", 1.0), lr=optim.get("lr", 0.002),
        momentum=optim.get("momentum", 0.9), weight_decay=optim.get("weight_decay", 5e-4),
        max_epochs=max(opts["epochs"], 1), warmup_epochs=optim.get("warmup_epochs", 1),
        warmup_lr=optim.get("warmup_lr", 1e-5),
        encoding=(cfg.method.prompt or {}).get("encoding", "auto") if cfg.method.get("prompt") else "auto",
        mixed_dtype=mixed_dtype(opts["precision"]), classnames=train_splits.classnames,
    )  # fmt: skip

    run_dir.mkdir(parents=True, exist_ok=True)
    tags = {"setting": cfg.setting, "dataset": dataset, "method": method, "backbone": cfg.model.name,
            "shots": shots, "seed": seed}  # fmt: skip
    logger = make_logger(cfg, run_dir, tags)
    trainer = make_trainer(cfg, opts["epochs"], logger, opts["precision"])

    start = time.time()
    if opts["epochs"] > 0:
        dm = FewShotDataModule(
            train=train_splits.train, test=train_splits.test, image_size=backbone.image_size, mean=backbone.mean,
            std=backbone.std, batch_size=cfg.trainer.batch_size, test_batch_size=cfg.trainer.test_batch_size,
            num_workers=cfg.trainer.num_workers, seed=seed,
        )  # fmt: skip
        log.info("training %s on %s (%d shots, seed %d): %d images, %d classes, %d epochs", method, dataset,
                 shots, seed, len(train_splits.train), len(train_splits.classnames), opts["epochs"])  # fmt: skip
        trainer.fit(module, train_dataloaders=dm.train_dataloader())
        if trainer.is_global_zero:
            save_checkpoint(run_dir / CHECKPOINT_NAME, learner, {
                "format": CHECKPOINT_FORMAT, "backbone": backbone.name, "pretrained": cfg.model.pretrained,
                "dataset": dataset, "classnames": list(train_splits.classnames), "method": method,
                "epoch": opts["epochs"], "seed": seed, "shots": shots,
            })  # fmt: skip
    seconds = time.time() - start

    base_record = {
        "method": method, "dataset": dataset, "backbone": cfg.model.name, "pretrained": cfg.model.pretrained,
        "setting": cfg.setting, "shots": shots, "seed": seed, "extras": extras,
        "train": {"epochs": opts["epochs"], "seconds": round(seconds, 3), "steps": module.steps_done,
                  "n_train": len(train_splits.train) if opts["epochs"] else 0,
                  "conflict_rate": module.conflicts / module.steps_done if module.steps_done else None,
                  "lam": opts["lam"]},
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": versions(), "run_dir": str(run_dir), "ckpt": cfg.ckpt,
    }  # fmt: skip
    records = []
    for (name, sub), sp in [((dataset, own_sub), train_splits), *target_splits.items()]:
        info = get_dataset_info(name)
        module.set_eval_classes(sp.classnames, template=template_for(info, cfg))
        metrics = evaluate(module, trainer, cfg, sp, backbone, opts["precision"])
        log.info("%s on %s (%s): acc %.2f%% over %d images", method, name, sub, metrics["acc"], metrics["n_test"])
        records.append({**base_record, "eval_dataset": name, "subsample": sub, "n_classes": len(sp.classnames),
                        "metrics": metrics})  # fmt: skip
    if trainer.is_global_zero:
        for rec in records[1:]:
            write_results(run_dir / "evals" / f"{rec['eval_dataset']}-{rec['subsample']}" / "results.json", rec)
        write_results(run_dir / "results.json", {**records[0], "evals": [
            {"eval_dataset": r["eval_dataset"], "subsample": r["subsample"], "acc": r["metrics"]["acc"]}
            for r in records[1:]]})  # fmt: skip
    return records[0]


def versions() -> dict[str, str]:
    import lightning
    import open_clip

    return {"prograd_pl": prograd_pl.__version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "lightning": lightning.__version__}  # fmt: skip
