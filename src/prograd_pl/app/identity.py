"""A run's identity: the part of its resolved config that changes what it computes, and the folder it names.

Everything that can change the result is in the identity, however it was set (command line, experiment file,
recipe, default); options that cannot (paths, loggers, progress bar, launcher, data workers, threads, the eval batch
size) are left out, so they never split a folder. The folder is a readable prefix plus a digest of the identity:
``<setting>/<dataset>/<method>/<backbone>/shots<k>/cfg-<digest>/seed<s>``; every seed of one configuration shares
the ``cfg-<digest>`` folder.

Two inputs that the config names but does not pin are added to it: the content (SHA-256) of a local weights file
(``model.pretrained`` a path, or ``mini:`` and ``$PROGRAD_MINI_WEIGHTS``), as ``model.weights_sha256``, and the
generator version of the mini world's datasets, as ``mini_world``. New weights or a regenerated world are then
another run, never a finished one read back. The split file the run reads is pinned the same way
(``dataset.split_sha256``), so runs on different splits never share a folder.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from prograd_pl.atomic import file_sha256 as file_digest
from prograd_pl.models.checkpoint import checkpoint_file
from prograd_pl.results.diff import differences, flatten  # noqa: F401  (their home; run and components use them)
from prograd_pl.results.store import IDENTITY_NAME

NEUTRAL_KEYS: tuple[str, ...] = (
    "hydra", "data_root", "output_root", "cache_root", "redo", "feature_cache", "logger", "callbacks", "threads",
    "data.num_workers", "data.pin_memory", "data.test_batch_size", "dataset.backbone", "trainer.enable_model_summary",
    "trainer.log_every_n_steps", "trainer.num_sanity_val_steps", "trainer.enable_checkpointing", "checkpoint",
    "continue_on_error", "ckpt_classes", "trainer.strategy.timeout", "jobs_per_gpu", "gpu_wait_s", "dataset.path", "dataset.split_file", "dataset.classnames",
)  # fmt: skip
"""Dotted keys of the resolved config that cannot change what a run computes."""

DEFAULT_ONLY_KEYS: dict[str, Any] = {"tf32": None, "compile": "none"}
"""Keys that identify a run only when set away from their default (the runs before the keys existed ran with the
default and keep their folders): TF32 and a compiled step change the float arithmetic on a GPU."""

IDENTITY_FILE = IDENTITY_NAME
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_][A-Za-z0-9_.]*)\}")


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node: Any = tree
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(leaf, None)


def weights_sha256(pretrained: Any) -> str | None:
    """SHA-256 of the local weights file that ``model.pretrained`` names (a path or ``mini:``); None for a tag
    (``openai``: the tag pins the weights), random weights, or a file that does not exist (loading reports it)."""
    from prograd_pl.mini.weights import MiniWeightsError
    from prograd_pl.models.backbone import resolve_pretrained

    try:
        weights = resolve_pretrained(None if pretrained is None else str(pretrained))
    except MiniWeightsError:
        return None
    if weights is None or not os.path.isfile(weights):
        return None
    return file_digest(weights)


def split_sha256(cfg: DictConfig | Mapping[str, Any], dataset: Mapping[str, Any]) -> str | None:
    """SHA-256 of the split file the run reads (``dataset.split``, a folder dataset's file, FGVC's lists); None
    where the split is the folders (ImageNet family), the mini world (its version pins it) or not there yet."""
    from prograd_pl.data.registry import split_sha256 as data_split_sha256

    options = cfg.get("dataset") if isinstance(cfg, (DictConfig, Mapping)) else None
    data_root = cfg.get("data_root") or "data"
    if options is None or dataset.get("name") is None:
        return None
    if isinstance(options, DictConfig):
        options = OmegaConf.to_container(options, resolve=True)
    return data_split_sha256(str(dataset["name"]), str(data_root), options)


def _uses_mini_world(tree: Mapping[str, Any]) -> bool:
    from prograd_pl.data.datasets.mini import MINI_DATASETS

    names = [(tree.get("dataset") or {}).get("name"), *(tree.get("eval_datasets") or [])]
    return any(n in MINI_DATASETS for n in names)


def identity(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The identifying part of a *resolved* config, normalised so that equivalent requests are equal.

    Zero-shot and the linear probe take no gradient steps: their epochs and batch size do not matter (recorded as 0 /
    absent), nor do zero-shot's shots (0). An eval-only run (``ckpt=``) is identified by the checkpoint's content,
    not its path, and trains for 0 epochs.
    """
    refs: list[tuple[str, str]] = []
    if isinstance(cfg, DictConfig):
        tree = OmegaConf.to_container(cfg, resolve=True)
        refs = references(cfg)
    else:
        tree = copy.deepcopy(dict(cfg))
    for key in NEUTRAL_KEYS:
        _drop(tree, key)
    for key, default in DEFAULT_ONLY_KEYS.items():
        if tree.get(key, default) == default:
            tree.pop(key, None)
    for key, target in refs:  # a repeated value stays once, where it is referenced from
        if _has(tree, target):
            _drop(tree, key)
    method = tree.get("method", {})
    if method.get("epochs") == 0 or tree.get("ckpt") is not None:  # no gradient steps: epochs, batch size moot
        tree.setdefault("trainer", {})["max_epochs"] = 0
        tree.get("data", {}).pop("batch_size", None)
        method.pop("batch_size", None)
    if method.get("uses_shots", True) is False:  # reads no training image (zero-shot CLIP)
        tree["shots"] = 0
    if tree.get("ckpt") is not None:
        ckpt = checkpoint_file(str(tree["ckpt"]))
        tree["ckpt"] = {"sha256": file_digest(ckpt) if ckpt.is_file() else None}
    model = tree.get("model")
    if isinstance(model, dict) and "weights_sha256" not in model:
        digest = weights_sha256(model.get("pretrained"))
        if digest is not None:
            model["weights_sha256"] = digest
    dataset = tree.get("dataset")
    if isinstance(dataset, dict) and "split_sha256" not in dataset:
        digest = split_sha256(cfg, dataset)
        if digest is not None:  # which split file the run reads: different splits never share a folder
            dataset["split_sha256"] = digest
    if _uses_mini_world(tree) and "mini_world" not in tree:
        from prograd_pl.mini.generate import GENERATOR_VERSION

        tree["mini_world"] = GENERATOR_VERSION
    return tree


def _has(tree: dict, dotted: str) -> bool:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def references(cfg: DictConfig, prefix: str = "") -> list[tuple[str, str]]:
    """``(key, target)`` for every key whose value is a plain absolute reference to another key
    (``method.max_epochs: ${trainer.max_epochs}``). Such a key repeats a value of the identity, so it is left out
    when its target is in the identity (a value set on it directly is no reference and stays)."""
    out = []
    raw_node = OmegaConf.to_container(cfg, resolve=False)
    for key in cfg.keys():
        name = f"{prefix}{key}"
        if OmegaConf.is_interpolation(cfg, key):
            raw = raw_node[key]
            match = _REFERENCE.fullmatch(raw) if isinstance(raw, str) else None
            if match:
                out.append((name, match.group(1)))
            continue
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_none() and not node._is_missing():
            out.extend(references(node, f"{name}."))
    return out


def canonical(tree: Mapping[str, Any]) -> str:
    return json.dumps(tree, sort_keys=True, separators=(",", ":"), default=str)


def digest(ident: Mapping[str, Any], n: int = 10) -> str:
    """Short, stable digest of an identity without its seed (all seeds of one configuration share it)."""
    rest = {k: v for k, v in ident.items() if k != "seed"}
    return hashlib.sha256(canonical(rest).encode("utf-8")).hexdigest()[:n]


def segment(text: Any) -> str:
    """One path segment that reads well and never needs quoting on a Hydra command line (no ``=``, ``,``, space)."""
    out = _UNSAFE.sub("-", str(text)).strip("-.")
    return out or "_"


def method_label(method: Mapping[str, Any]) -> str:
    """The method's name, with the gradient rule it runs under when that is not its own (``coop+prograd``)."""
    name = str(method.get("name"))
    rule = method.get("rule")
    return f"{name}+{rule}" if rule not in (None, "", "none", name) else name


def run_dir(output_root: str | Path, ident: Mapping[str, Any]) -> Path:
    """``<root>/<setting>/<dataset>/<method>/<backbone>/shots<k>/cfg-<digest>/seed<s>``."""
    parts = [
        segment(ident["setting"]),
        segment(ident["dataset"]["name"]),
        segment(method_label(ident["method"])),
        segment(ident["model"]["name"]),
        f"shots{int(ident['shots'])}",
        f"cfg-{digest(ident)}",
        f"seed{int(ident['seed'])}",
    ]
    return Path(output_root).joinpath(*parts)


def readable_overrides(ident: Mapping[str, Any]) -> list[str]:
    """The overrides that give the plain recipe for the same readable prefix (to name what else differs): the
    method with its rule (``maple+prograd``'s recipe is maple's under the rule, lam and all), and the model config
    whose name and weights these are (``model=mini_vit``, with its ``prompt_depth``) where one is."""
    rule = ident["method"].get("rule")
    model = ident["model"]
    return [
        f"setting={ident['setting']}", f"dataset={ident['dataset']['name']}", f"method={ident['method']['name']}",
        *([f"method.rule={rule}"] if rule not in (None, "none") else []), *model_overrides(model),
        f"shots={max(int(ident['shots']), 1)}", f"seed={int(ident['seed'])}",
    ]  # fmt: skip


def model_overrides(model: Mapping[str, Any]) -> list[str]:
    """``model=<config>`` for the model config with this name and weights, else the name and weights as options."""
    from prograd_pl.app.config import model_config_for

    config = model_config_for(model.get("name"), model.get("pretrained"))
    if config is not None:
        return [f"model={config}"]
    return [f"model.name={model['name']}", f"model.pretrained={_override_value(model['pretrained'])}"]


def _override_value(value: Any) -> str:
    if value is None:
        return "null"
    text = str(value)
    return "'" + text.replace("'", "\\'") + "'"


def read_identity(folder: str | Path) -> dict[str, Any] | None:
    """The identity stored in a run folder, or None."""
    path = Path(folder) / IDENTITY_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
