"""One run: resolve and check the config, find the run's folder from its identity, build the components, fit,
evaluate on every target, write ``results.json`` last (atomically)."""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

import prograd_pl
from prograd_pl import paper
from prograd_pl.app import components, devices, logs, resume
from prograd_pl.app.config import check, compose, dataset_template, resolve, single_values_as_lists
from prograd_pl.app.evaluate import evaluate
from prograd_pl.app.identity import (
    IDENTITY_FILE,
    canonical,
    differences,
    identity,
    method_label,
    read_identity,
    readable_overrides,
    run_dir,
)
from prograd_pl.app.threads import apply_threads
from prograd_pl.atomic import atomic_open
from prograd_pl.data.base2new import subsample_classes
from prograd_pl.data.fewshot import fewshot_split
from prograd_pl.data.registry import get_dataset_info, load_dataset
from prograd_pl.errors import ConfigError, DatasetError, disk_error
from prograd_pl.methods.module import PromptModule
from prograd_pl.models.checkpoint import (
    CHECKPOINT_NAME,
    check_fits,
    check_matches,
    learner_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from prograd_pl.results.store import ResultsError, read_results, write_results

log = logging.getLogger("prograd_pl")


def eval_targets(cfg: DictConfig) -> list[tuple[str, str]]:
    """The (dataset, subsample) pairs evaluated besides the training dataset's own test split."""
    dataset = cfg.dataset.name
    if cfg.setting == "base2new":
        return [(dataset, "new")]
    names = cfg.eval_datasets
    if names is None and cfg.setting in ("dg", "xd"):
        names = paper.DG_TARGETS if cfg.setting == "dg" else [d for d in paper.XD_TARGETS if d != dataset]
    return [(str(n), "all") for n in names or []]


def finished(folder: Path, ident: dict[str, Any]) -> dict[str, Any] | None:
    """The results of a finished run of exactly this identity in ``folder``, else None."""
    try:
        rec = read_results(folder / "results.json")
    except ResultsError:
        return None
    if canonical(rec.get("identity") or {}) != canonical(ident):
        log.warning("%s holds a run of another identity; running again", folder)
        return None
    return rec


def recipe_extras(ident: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    """What this run's identity sets differently from the plain recipe of the same readable prefix
    (setting, dataset, method, backbone, shots, seed): the options that name its variant in tables."""
    base_cfg = compose(readable_overrides(ident))
    base_cfg.data_root, base_cfg.output_root = str(cfg.data_root), str(cfg.output_root)  # data, never re-parsed
    base = identity(base_cfg)
    if ident["method"].get("uses_shots", True) is False:  # its shots were normalised to 0 on both sides
        base["shots"] = ident["shots"]
    return {k: v[0] for k, v in differences(ident, base).items()}


def check_test_classes(splits) -> None:
    """Every class must have test images: a class without any would silently count as 0 % of nothing."""
    if not splits.test:
        raise DatasetError(f"dataset {splits.name} has an empty test split.")
    present = {d.label for d in splits.test}
    missing = [name for i, name in enumerate(splits.classnames) if i not in present]
    if missing:
        raise DatasetError(
            f"dataset {splits.name}: class '{missing[0]}' has no test images"
            f"{f' (and {len(missing) - 1} more classes)' if len(missing) > 1 else ''}; expected every class in "
            "the test split."
        )


def trained_context(folder: Path, ident: dict[str, Any]) -> dict[str, Any] | None:
    """The context saved by an earlier attempt of this very run (same identity), if its training finished."""
    ckpt = folder / CHECKPOINT_NAME
    if not ckpt.is_file() or canonical(read_identity(folder) or {}) != canonical(ident):
        return None
    try:
        return read_checkpoint(ckpt)
    except ConfigError:
        return None  # unreadable: train again


def _load_dataset(name: str, data_root: Path, options: Any = None):
    """:func:`load_dataset`, with a data root that cannot be written (a mini dataset is generated there on first
    use) named in one sentence instead of the generator's EROFS/ENOSPC traceback."""
    try:
        return load_dataset(name, data_root, options)
    except OSError as err:
        disk = disk_error(err, data_root)
        if disk is None or isinstance(err, DatasetError):
            raise
        reason = str(disk).split(": ", 1)[-1].split(";")[0]
        raise DatasetError(f"dataset {name} cannot be prepared under data_root={data_root} ({reason}); point "
                           "data_root (or $PROGRAD_DATA) at a folder that can be written.") from err


@dataclass
class Plan:
    """A run, resolved and checked: its config, identity, folder, data and what it trains for."""

    cfg: DictConfig
    ident: dict[str, Any]
    out: Path
    blob: dict[str, Any] | None  # the checkpoint of ckpt=, read
    train_splits: Any
    targets: dict[tuple[str, str], Any]
    own_sub: str
    container: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return str(self.cfg.dataset.name)

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def shots(self) -> int:
        return int(self.ident["shots"])

    @property
    def epochs(self) -> int:
        return int(self.ident["trainer"]["max_epochs"])


@dataclass
class Built:
    """What runs: the backbone, the method's module (or the probe), the trainer and its loggers."""

    backbone: Any
    module: Any
    trainer: L.Trainer
    loggers: list
    trained_before: dict[str, Any] | None


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train (unless the method learns nothing or ``ckpt`` is given) and evaluate one configuration.

    A folder that already holds a finished run of the same identity is read back instead (``redo=true`` forces a
    new run).  The steps: :func:`resolve_run` -> :func:`build_run` -> :func:`fit_run` -> :func:`evaluate_run` ->
    :func:`record_run`.
    """
    # the frozen towers are in eval mode on purpose (RN50's BatchNorm); Lightning warns about it
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    plan = resolve_run(cfg)
    if isinstance(plan, dict):  # finished before: read back
        return plan
    built = build_run(plan)
    start = time.time()
    train = fit_run(plan, built)
    world_size = built.trainer.world_size
    built.trainer = components.single_process_evaluation(built.trainer, plan.cfg, built.loggers)  # rank 0 alone
    train.update(seconds=round(time.time() - start, 3), world_size=world_size)
    records = evaluate_run(plan, built, train)
    return record_run(plan, built, records)


def resolve_run(cfg: DictConfig) -> Plan | dict[str, Any]:
    """Resolve and check the config, find the run's folder from its identity (a finished run there is returned
    as its record), then load the data: every bad path or option is reported before the model is built."""
    single_values_as_lists(cfg)  # eval_datasets=mini_colors is a list of one
    resolved = resolve(cfg)
    check(resolved)
    blob = read_checkpoint(resolved.ckpt) if resolved.ckpt is not None else None
    ident = identity(cfg)
    cfg = resolved
    out = run_dir(cfg.output_root, ident)
    if not cfg.redo:
        done = finished(out, ident)
        if done is not None:
            log.info("skipping finished run %s", out)
            return {**done, "skipped": True}
    container = OmegaConf.to_container(cfg, resolve=True)
    logs.print_config(container)  # checked above: the values that run, recipe included
    dataset, seed, shots = str(cfg.dataset.name), int(cfg.seed), int(ident["shots"])
    data_root = Path(cfg.data_root)
    full = _load_dataset(dataset, data_root, cfg.dataset)
    info = get_dataset_info(dataset)
    fewshot = full if (info.test_only or shots == 0) else fewshot_split(full, shots, seed, data_root)
    own_sub = "base" if cfg.setting == "base2new" else "all"
    train_splits = subsample_classes(fewshot, own_sub)
    targets = {}
    for name, sub in eval_targets(cfg):
        targets[(name, sub)] = subsample_classes(fewshot, sub) if sub != "all" else _load_dataset(name, data_root)
    for sp in (train_splits, *targets.values()):
        check_test_classes(sp)
    if blob is not None:
        check_matches(blob, cfg.ckpt, str(cfg.method.name), cfg.method.get("prompt"), train_splits.classnames,
                      str(cfg.get("ckpt_classes", "check")))  # fmt: skip
    return Plan(cfg, ident, out, blob, train_splits, targets, own_sub, container)


def build_run(plan: Plan) -> Built:
    """The backbone, the method's module (from a checkpoint's context, or an earlier attempt's trained one), the
    run folder with its identity, config and log, the loggers and the trainer."""
    cfg, out = plan.cfg, plan.out
    devices.set_math_modes(cfg)
    L.seed_everything(plan.seed, workers=True, verbose=False)
    from prograd_pl.models.backbone import load_backbone

    backbone = load_backbone(cfg.model.name, cfg.model.pretrained, fast_image=bool(cfg.model.fast_image),
                             image_bf16=bool(cfg.model.image_bf16), image_compile=bool(cfg.model.image_compile))
    log.info("torch CPU threads: %d", apply_threads(cfg.threads, backbone.model))
    template, classnames = str(cfg.dataset.template), plan.train_splits.classnames
    learner = None
    if plan.blob is not None:
        check_fits(plan.blob, cfg.ckpt, backbone.name, backbone.text.width)
        learner = learner_from_checkpoint(plan.blob, backbone, classnames, template)
    trains = plan.epochs > 0 and plan.blob is None
    trained_before = trained_context(out, plan.ident) if trains and not cfg.redo else None
    if trained_before is not None:  # training finished in an earlier attempt whose evaluation failed
        log.info("training of %s finished before; evaluating its saved context", out)
        learner = learner_from_checkpoint(trained_before, backbone, classnames, template)
    module = components.build_method(cfg, backbone, classnames, plan.seed, prompt=learner)
    if cfg.get("compile", "none") != "none" and hasattr(module, "set_compile"):  # the probe has no step
        module.set_compile(str(cfg.compile))
    try:  # a full or read-only output_root ends here, before any training
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise (disk_error(err, out) or err) from err
    logs.attach_run_log(out)  # <run_dir>/log.txt: what was logged so far, then everything that follows
    with atomic_open(out / IDENTITY_FILE, "w") as fh:
        fh.write(json.dumps(plan.ident, indent=2, sort_keys=True) + "\n")
    with atomic_open(out / "config.yaml", "w") as fh:
        fh.write(OmegaConf.to_yaml(plan.container))
    loggers = components.build_loggers(cfg, out, components.run_tags(cfg, plan.shots))
    components.log_config(loggers, plan.container)
    trainer = components.build_trainer(cfg, loggers, components.build_callbacks(cfg))
    return Built(backbone, module, trainer, loggers, trained_before)


def fit_run(plan: Plan, built: Built) -> dict[str, Any]:
    """Fit the linear probe on frozen features, or train the prompt (resumable) and save its context; returns
    the record's ``train`` part."""
    cfg, module, dataset = plan.cfg, built.module, plan.dataset
    splits = plan.train_splits
    resumed_epoch = plan.epochs if built.trained_before is not None else 0
    if not isinstance(module, PromptModule):  # the linear probe: logistic regression on frozen train/val features
        loader = lambda items: components.build_datamodule(cfg, [], items, built.backbone).test_dataloader()  # noqa: E731
        probe = module.fit_loaders(loader(splits.train), loader(splits.val))
        log.info("linear probe on %s: C=%.3g chosen on val (%.2f%%)", dataset, probe["C"], probe["val_acc"])
    trained = plan.epochs > 0 and plan.blob is None
    if trained and built.trained_before is None:
        dm = components.build_datamodule(cfg, splits.train, splits.test, built.backbone)
        log.info("training %s on %s (%d shots, seed %d): %d images, %d classes, %d epochs", cfg.method.name,
                 dataset, plan.shots, plan.seed, len(splits.train), len(splits.classnames), plan.epochs)  # fmt: skip
        ckpt_opts = cfg.get("checkpoint") or {}
        resumed_epoch = resume.fit(built.trainer, module, dm.train_dataloader(), plan.out,
                                   every_n_epochs=int(ckpt_opts.get("every_n_epochs", 1)),
                                   enabled=bool(ckpt_opts.get("resume", True)), start_over=bool(cfg.redo),
                                   grace_s=ckpt_opts.get("grace_s", 600))  # fmt: skip
        if built.trainer.is_global_zero:
            save_checkpoint(plan.out / CHECKPOINT_NAME, module.prompt_learner, {
                "backbone": built.backbone.name, "pretrained": cfg.model.pretrained, "dataset": dataset,
                "classnames": list(splits.classnames), "method": str(cfg.method.name), "epoch": plan.epochs,
                "seed": plan.seed, "shots": plan.shots,
            })  # fmt: skip
    steps = getattr(module, "steps_done", 0)
    conflicts = getattr(module, "conflicts", 0)
    return {"epochs": plan.epochs if trained else 0, "steps": steps, "n_train": len(splits.train) if trained else 0,
            "conflict_rate": conflicts / steps if steps else None, "lam": float(cfg.method.get("lam") or 0.0),
            "resumed_epoch": resumed_epoch}  # fmt: skip


def evaluate_run(plan: Plan, built: Built, train: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per evaluated target: the training dataset's own test split first, then each other target."""
    cfg, module, dataset = plan.cfg, built.module, plan.dataset
    base_record = {
        "method": method_label(cfg.method), "dataset": dataset, "backbone": cfg.model.name,
        "pretrained": cfg.model.pretrained, "setting": cfg.setting, "shots": plan.shots, "seed": plan.seed,
        "extras": recipe_extras(plan.ident, cfg),
        "train": {k: train[k] for k in ("epochs", "seconds", "steps", "n_train", "conflict_rate", "lam",
                                        "world_size", "resumed_epoch")},
        "config": plan.container, "identity": plan.ident, "versions": versions(), "run_dir": str(plan.out),
        "ckpt": cfg.ckpt,
    }  # fmt: skip
    records = []
    for (name, sub), sp in [((dataset, plan.own_sub), plan.train_splits), *plan.targets.items()]:
        template = str(cfg.dataset.template) if name == dataset else dataset_template(name, cfg.dataset.template_source)
        module.set_eval_classes(sp.classnames, template=template)
        module.metric_prefix = components.metric_prefix(cfg.setting, dataset, name, sub)
        metrics = evaluate(module, built.trainer, cfg, sp, built.backbone)
        log.info("%s on %s (%s): acc %.2f%% over %d images", cfg.method.name, name, sub, metrics["acc"],
                 metrics["n_test"])  # fmt: skip
        records.append({**base_record, "eval_dataset": name, "subsample": sub, "n_classes": len(sp.classnames),
                        "metrics": metrics})  # fmt: skip
    return records


def record_run(plan: Plan, built: Built, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Write each target's results.json, the run's own last (atomically), drop last.ckpt, close the loggers."""
    out = plan.out
    if built.trainer.is_global_zero:
        for rec in records[1:]:
            write_results(out / "evals" / f"{rec['eval_dataset']}-{rec['subsample']}" / "results.json", rec)
        write_results(out / "results.json", {**records[0], "evals": [
            {"eval_dataset": r["eval_dataset"], "subsample": r["subsample"], "acc": r["metrics"]["acc"]}
            for r in records[1:]]})  # fmt: skip
        if not (plan.cfg.get("checkpoint") or {}).get("keep_last", False):
            resume.remove_last(out)
    components.finish_loggers(built.loggers, records, plan.cfg.setting)  # per-target names, then close (W&B)
    return records[0]


def versions() -> dict[str, str]:
    import lightning
    import open_clip

    return {"prograd_pl": prograd_pl.__version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "lightning": lightning.__version__}  # fmt: skip
