"""The config: the recipe resolvers (``${pg.*:...}``), composition, and checking every option before any work.

Registering the resolvers is a side effect of importing this module; everything that composes the config
(the Hydra app, tests, the sweep driver) imports it first.
"""

from __future__ import annotations

import difflib
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from prograd_pl import paper
from prograd_pl.errors import ConfigError, UserError
from prograd_pl.methods import COMPILE_MODES

CONFIG_MODULE = "prograd_pl.conf"
"""Where Hydra finds the configs: ``conf/`` of the repository, mapped into the package (also inside the wheel)."""


def dataset_template(dataset: str, source: str) -> str:
    """The hand-crafted template of ``dataset`` from the ProGrad, the CoOp or the KgCoOp table (KgCoOp's trainer
    uses CoOp's table except for DTD: "a photo of a {}, a type of texture.")."""
    from prograd_pl.data.registry import get_dataset_info

    info = get_dataset_info(dataset)
    tables = {"prograd": info.template, "coop": info.coop_template, "kgcoop": info.kgcoop_template or info.coop_template}
    if source not in tables:
        raise ConfigError(f"dataset.template_source='{source}' is not one of {', '.join(tables)}.")
    return tables[source]


def _workers(accelerator: str) -> int:
    """Data-loading processes: 0 on the CPU (small images; workers would compete with the model for the cores),
    up to 8 on accelerators (decoding and augmentation must keep up with a GPU)."""
    if str(accelerator) == "cpu":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def _as_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {key}={value!r}.")
    return value


def _method_epochs(dataset: Any, shots: Any, epochs: Any) -> int:
    """``method.epochs``: a number of epochs, or ``recipe`` (the ProGrad/CoOp table for this dataset and shots)."""
    if str(epochs) == "recipe":
        return paper.recipe_epochs(str(dataset), _as_int(shots, "shots"))
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"method.epochs must be recipe or a number of epochs >= 0, got method.epochs={epochs!r}.")
    return epochs


def _mini_tasks() -> list[str]:
    """The mini world's trainable tasks (not the test-only shifted variants)."""
    from prograd_pl.mini.tasks import TASKS

    return [n for n, t in TASKS.items() if not t.test_only]


def _list(name: str) -> str:
    """Comma-separated lists of the protocol, for sweeper params (``dataset: ${pg.list:datasets}``)."""
    if name == "mini_tasks":
        items: Sequence[Any] = _mini_tasks()
    else:
        items = {"datasets": paper.DATASETS, "shots": paper.SHOTS, "seeds": paper.SEEDS,
                 "settings": paper.SETTINGS}[name]  # fmt: skip
    return ",".join(str(i) for i in items)


def _mini_others(dataset: str) -> ListConfig:
    return OmegaConf.create([n for n in _mini_tasks() if n != dataset])


RESOLVERS = {
    "pg.epochs": lambda dataset, shots, epochs: _method_epochs(dataset, shots, epochs),
    "pg.lambda": lambda dataset, shots: paper.recipe_lambda(str(dataset), _as_int(shots, "shots")),
    "pg.batch_size": lambda value: _as_int(value, "method.batch_size"),
    "pg.rule_lambda": lambda rule, dataset, shots: (
        paper.recipe_lambda(str(dataset), _as_int(shots, "shots")) if str(rule) == "prograd" else 0.0
    ),
    "pg.template": lambda dataset, source: dataset_template(str(dataset), str(source)),
    "pg.workers": _workers,
    "pg.on_gpu": lambda accelerator: str(accelerator) in ("gpu", "cuda"),
    "pg.list": _list,
    "pg.mini_others": _mini_others,
}


def register_resolvers() -> None:
    """Register the ``pg.*`` resolvers with OmegaConf (idempotent)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The project's config composed with ``overrides``, as the command line would compose it (no Hydra run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside the Hydra app (or a test's initialize block)
        return hydra_compose(config_name="config", overrides=list(overrides))
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


LIST_KEYS = ("eval_datasets",)
"""Options that hold a list; a single value given for one (``eval_datasets=mini_colors``) is a list of one."""


def single_values_as_lists(cfg: DictConfig) -> DictConfig:
    """``cfg`` with a single value of a list option (:data:`LIST_KEYS`) turned into a one-element list, in place
    (read character by character otherwise)."""
    for key in LIST_KEYS:
        if key not in cfg or OmegaConf.is_interpolation(cfg, key):
            continue
        value = cfg.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            cfg[key] = [value]
    return cfg


def resolve(cfg: DictConfig) -> DictConfig:
    """A resolved copy of ``cfg`` without Hydra's own node.

    A user error raised inside a resolver (an unknown dataset, a bad template source) comes out as itself, any other
    resolution failure as one ConfigError sentence.
    """
    from omegaconf.errors import OmegaConfBaseException

    plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    plain.pop("hydra", None)
    single_values_as_lists(plain)
    try:
        OmegaConf.resolve(plain)
    except OmegaConfBaseException as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"the config cannot be resolved: {text}") from None
    return plain


# ---- checking -----------------------------------------------------------------------------------------------
PRECISIONS = ("32", "32-true", "bf16-mixed", "16-mixed")
MAX_SEED = 2**32 - 1
"""NumPy's (and so Lightning's ``seed_everything``) largest seed."""
RUN_SUFFIX_CHARS = 320
"""Room a run needs below ``output_root``: ``<setting>/<dataset>/<method>/<backbone>/shots<k>/cfg-<digest>/seed<s>``
plus ``evals/<dataset>-<subset>/`` and a temporary file's name."""
MIN_FREE_BYTES = 64 << 20
"""Free space ``output_root`` must offer before a run starts: its checkpoints (the learned context, ``last.ckpt``
with the optimiser's state), results and logs are a few MiB; the feature cache only warns when it runs out."""


def _check_int(cfg: DictConfig, key: str, low: int | None = None, what: str = "") -> None:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        raise ConfigError(f"{key} must be an integer{bound}{what}, got {key}={value!r}.")


def _check_number(cfg: DictConfig, key: str, low: float, high: float | None = None, strict_low: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = (value > low if strict_low else value >= low) and (high is None or value <= high)
    if not ok:
        rng = f"{'>' if strict_low else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        raise ConfigError(f"{key} must be a finite number {rng}, got {key}={value!r}.")


def _check_choice(cfg: DictConfig, key: str, choices: Sequence[str]) -> None:
    value = OmegaConf.select(cfg, key)
    if str(value) not in choices:
        raise ConfigError(f"{key}='{value}' is not one of {', '.join(choices)}.")


def check(cfg: DictConfig) -> None:
    """Check the type and range of every option of a resolved config; one sentence per problem (ConfigError)."""
    from prograd_pl.data.registry import get_dataset_info

    _check_choice(cfg, "setting", paper.SETTINGS)
    _check_int(cfg, "shots", 1, " (labelled images per class)")
    _check_int(cfg, "seed", 0, f" and <= {MAX_SEED}")
    if cfg.seed > MAX_SEED:
        raise ConfigError(f"seed must be an integer >= 0 and <= {MAX_SEED} (NumPy's seed range), got seed={cfg.seed}.")
    dataset = str(cfg.dataset.name)
    info = get_dataset_info(dataset)
    method = str(cfg.method.name)
    if info.test_only and cfg.method.get("uses_shots", True) and cfg.ckpt is None:
        raise ConfigError(
            f"dataset={dataset} is test-only; train on imagenet with setting=dg to evaluate on it, or pass ckpt=."
        )
    if cfg.eval_datasets is not None and not isinstance(cfg.eval_datasets, (list, ListConfig)):
        raise ConfigError(f"eval_datasets must be a list of dataset names, got {cfg.eval_datasets!r}.")
    for name in cfg.eval_datasets or []:
        get_dataset_info(str(name))
    if cfg.method.get("prompt") is None and cfg.ckpt is not None:
        raise ConfigError(f"method={method} learns no prompt and cannot use ckpt={cfg.ckpt}; pass the method the "
                          "checkpoint was trained with (method=coop, prograd, ...).")  # fmt: skip
    _check_choice(cfg, "ckpt_classes", ("check", "ignore"))
    _check_choice(cfg, "trainer.precision", PRECISIONS)
    if str(cfg.trainer.precision) == "16-mixed" and str(cfg.trainer.get("accelerator")) == "cpu":
        raise ConfigError(
            "trainer.precision=16-mixed needs a GPU (Lightning has no fp16 autocast on the CPU); use "
            "trainer.precision=bf16-mixed or 32 on the CPU."
        )
    _check_int(cfg, "trainer.max_epochs", 0)
    _check_int(cfg, "data.batch_size", 1)
    _check_int(cfg, "data.test_batch_size", 1)
    _check_int(cfg, "data.num_workers", 0)
    if cfg.threads is not None:
        _check_int(cfg, "threads", 1)
    if cfg.get("tf32") is not None and not isinstance(cfg.tf32, bool):
        raise ConfigError(f"tf32={cfg.tf32!r} must be true, false or null (null: on for GPU runs).")
    _check_choice(cfg, "compile", COMPILE_MODES)
    m = cfg.method
    rule = m.get("rule", "none")
    if "rule" in m:
        _check_choice(cfg, "method.rule", ("none", "prograd"))
        _check_choice(cfg, "method.rule_scope", ("tensor", "vector"))
    if "lam" in m and m.lam is not None:
        _check_number(cfg, "method.lam", 0.0, 1.0 if rule == "prograd" else None)
    if "temperature" in m:
        _check_number(cfg, "method.temperature", 0.0, strict_low=True)
    if m.get("optim") is not None:
        _check_number(cfg, "method.optim.lr", 0.0, strict_low=True)
        _check_number(cfg, "method.optim.momentum", 0.0, 1.0)
        _check_number(cfg, "method.optim.weight_decay", 0.0)
    if m.get("prompt") is not None:
        _check_int(cfg, "method.prompt.n_ctx", 1)
        _check_choice(cfg, "method.prompt.init", ("template", "phrase", "random"))
        _check_choice(cfg, "method.prompt.position", ("end", "middle", "front"))
        if not isinstance(m.prompt.csc, bool):
            raise ConfigError(f"method.prompt.csc must be true or false, got {m.prompt.csc!r}.")
    if "encoding" in m:
        _check_choice(cfg, "method.encoding", ("auto", "plain", "truncated", "shared_prefix"))
    if "warmup_epochs" in m:
        _check_int(cfg, "method.warmup_epochs", 0)
        _check_number(cfg, "method.warmup_lr", 0.0, strict_low=True)
    if not all(isinstance(cfg.get(k, True), bool) for k in ("redo", "feature_cache", "continue_on_error")):
        raise ConfigError(f"redo, feature_cache and continue_on_error must be true or false, got redo={cfg.redo!r}, "
                          f"feature_cache={cfg.feature_cache!r}.")  # fmt: skip
    for key in ("fast_image", "image_bf16", "image_compile"):
        if not isinstance(cfg.model.get(key, False), bool):
            raise ConfigError(f"model.{key} must be true or false, got {cfg.model.get(key)!r}.")
    if m.get("prompt") is not None:
        _check_context_fits(cfg)
    for key in ("data_root", "output_root", "cache_root"):
        value = cfg.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} must be a folder path, got {key}={value!r}.")
        _check_path_length(key, value, RUN_SUFFIX_CHARS if key == "output_root" else 0)
        if Path(value).exists() and not Path(value).is_dir():
            raise ConfigError(f"{key}={value} is a file; expected a folder.")
    if not _writable(Path(cfg.output_root)):
        raise ConfigError(f"output_root={cfg.output_root} is not writable; expected a folder this user can write.")
    _check_accelerator(cfg)
    _check_devices(cfg)
    _check_strategy(cfg)
    _check_checkpointing(cfg)
    _check_targets(cfg)
    _check_weights_file(cfg)
    _check_output_disk(cfg)


def _writable(folder: Path) -> bool:
    """Whether ``folder`` can be written (or created under its nearest existing parent)."""
    folder = folder.expanduser().absolute()
    while not folder.exists():
        if folder.parent == folder:
            return False
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _check_accelerator(cfg: DictConfig) -> None:
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.accelerator={accelerator} but no GPU is visible (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use trainer=cpu or run on a GPU node."
            )
    elif accelerator not in ("cpu", "auto", "mps", "tpu"):
        raise ConfigError(f"trainer.accelerator='{accelerator}' is not one of cpu, gpu, auto.")


_WEIGHT_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save (zip) and legacy pickle


def _check_weights_file(cfg: DictConfig) -> None:
    """A local ``model.pretrained`` file must look like saved weights (not, say, a text file)."""
    value = cfg.model.get("pretrained")
    if isinstance(value, str) and value.startswith("mini:"):
        from prograd_pl.mini.weights import MiniWeightsError, mini_model

        try:
            name = mini_model(value).name
        except MiniWeightsError as err:
            raise ConfigError(str(err)) from None
        if name != str(cfg.model.name):
            raise ConfigError(f"model.pretrained={value} holds {name}'s weights, not model.name={cfg.model.name}'s; "
                              f"use model={model_config_for(name, value)}.")  # fmt: skip
        return
    if not isinstance(value, str) or value in ("", "none", "None"):
        return
    path = Path(value).expanduser()
    if not path.is_file():
        return  # a tag (openai, laion2b_...) or a missing file: the backbone loader names it
    with open(path, "rb") as fh:
        head = fh.read(16)
    safetensors = path.suffix == ".safetensors" and len(head) >= 9 and head[8:9] == b"{"
    problem = None if (head.startswith(_WEIGHT_MAGIC) or safetensors) else "not a checkpoint"
    if problem is None and head.startswith(b"PK"):
        problem = _zip_problem(path)
    elif problem is None and head.startswith(b"\x80"):  # a legacy pickle: refused unless it loads as plain weights
        import torch

        try:
            with warnings.catch_warnings():  # (torch warns about the protocol of a crafted pickle)
                warnings.simplefilter("ignore")
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - a crafted or damaged pickle: the same sentence
            problem = f"{type(err).__name__}"
    if problem is not None:
        raise ConfigError(
            f"model.pretrained={value} is not a weights file ({problem}; expected a checkpoint saved by torch.save "
            "or a .safetensors file)."
        )


def _zip_problem(path: Path) -> str | None:
    """Why a zip file is not a torch checkpoint (damaged, or without the ``data.pkl`` torch.save writes)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        return f"a damaged zip archive: {err}"
    if not any(n.endswith("data.pkl") for n in names):
        return "a zip archive without torch's data.pkl"
    return None


def _check_context_fits(cfg: DictConfig) -> None:
    """The learnable context plus SOT, a class name and EOT must fit the text tower's context length."""
    from prograd_pl.startup import import_heavy

    import_heavy()  # the first import of torch and open_clip, Ctrl-C held meanwhile
    import open_clip

    from prograd_pl.models.backbone import register_model_configs

    register_model_configs()
    model_cfg = open_clip.get_model_config(str(cfg.model.name)) or {}
    length = (model_cfg.get("text_cfg") or {}).get("context_length")
    n_ctx = int(cfg.method.prompt.n_ctx)
    if length and n_ctx + 3 > int(length):
        raise ConfigError(
            f"method.prompt.n_ctx={n_ctx} does not fit model {cfg.model.name}'s text context of {length} tokens "
            f"(start + context + class name + end); expected n_ctx <= {int(length) - 3}."
        )


def _check_devices(cfg: DictConfig) -> None:
    """``trainer.devices``: a count >= 1 on the CPU (Lightning would read -1 as "every core as a process"); on GPUs a
    count, -1 (all), ``auto`` or a list of indices, no more than are visible."""
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    value = cfg.trainer.get("devices", 1)
    if isinstance(value, ListConfig):
        value = list(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if value == "auto":
        return
    on_cpu = accelerator == "cpu"
    ok_count = isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or (value == -1 and not on_cpu))
    ok_list = (isinstance(value, list) and bool(value) and not on_cpu
               and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value))  # fmt: skip
    if not (ok_count or ok_list):
        expected = ("a number of processes >= 1 (or auto)" if on_cpu
                    else "a number of devices >= 1, -1 (all), auto or a list of device indices")  # fmt: skip
        raise ConfigError(f"trainer.devices={value!r} with trainer.accelerator={accelerator}; expected {expected}.")
    if accelerator in ("gpu", "cuda") and isinstance(value, int) and value > 1:
        import torch

        visible = torch.cuda.device_count()
        if value > visible:
            raise ConfigError(f"trainer.devices={value} but only {visible} GPU(s) are visible; expected at most {visible}.")
    if "num_nodes" in cfg.trainer:
        _check_int(cfg, "trainer.num_nodes", 1)


def _check_strategy(cfg: DictConfig) -> None:
    """``trainer.strategy``: ``auto``, a name Lightning registers (``ddp``, ``fsdp`` ...) or a ``_target_`` node."""
    value = cfg.trainer.get("strategy", "auto")
    if isinstance(value, DictConfig):
        if "_target_" not in value:
            raise ConfigError("trainer.strategy must be a strategy name or a node with a _target_, got a node without one.")
        return
    from prograd_pl.startup import import_heavy

    import_heavy()
    from lightning.pytorch.strategies import StrategyRegistry

    names = ["auto", *StrategyRegistry.available_strategies()]
    if str(value) not in names:
        raise ConfigError(f"trainer.strategy='{value}' is not a Lightning strategy; expected auto, ddp, ddp_spawn, "
                          "fsdp, deepspeed or trainer=ddp.")  # fmt: skip


def _check_checkpointing(cfg: DictConfig) -> None:
    """The ``checkpoint`` node: ``every_n_epochs`` >= 1, ``resume`` and ``keep_last`` true or false, ``grace_s`` > 0
    or null."""
    node = cfg.get("checkpoint")
    if node is None:
        return
    if not isinstance(node, DictConfig):
        raise ConfigError(f"checkpoint must be a node (resume, every_n_epochs, keep_last), got checkpoint={node!r}.")
    unknown = sorted(set(node) - {"resume", "every_n_epochs", "keep_last", "grace_s"})
    if unknown:
        raise ConfigError(f"checkpoint.{unknown[0]} is not an option; expected resume, every_n_epochs, keep_last or "
                          "grace_s.")  # fmt: skip
    if "every_n_epochs" in node:
        _check_int(cfg, "checkpoint.every_n_epochs", 1)
    if node.get("grace_s") is not None:
        _check_number(cfg, "checkpoint.grace_s", 0.0, strict_low=True)
    for key in ("resume", "keep_last"):
        if not isinstance(node.get(key, True), bool):
            raise ConfigError(f"checkpoint.{key} must be true or false, got checkpoint.{key}={node.get(key)!r}.")


_HYDRA_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")


def _check_targets(cfg: DictConfig) -> None:
    """Every option of a node built with ``_target_`` (method, prompt, optimiser, data, trainer, loggers,
    callbacks) must be a parameter of what it builds: ``+method.lamda=0.5`` is named here, not as a TypeError after
    the run folder exists."""
    for key in ("method", "data", "trainer", "logger", "callbacks"):
        node = cfg.get(key)
        if isinstance(node, DictConfig):
            _check_target_node(node, key)
    _check_method_class(cfg)


def _check_deep_prompts(cfg: DictConfig, method: str) -> None:
    """A method that prompts the image tower needs a ViT, and its depths must fit the towers' blocks."""
    import open_clip

    from prograd_pl.models.backbone import register_model_configs

    register_model_configs()
    name = str(cfg.model.name)
    model_cfg = open_clip.get_model_config(name) or {}
    vision, text = model_cfg.get("vision_cfg") or {}, model_cfg.get("text_cfg") or {}
    if not isinstance(vision.get("layers"), int) or vision.get("patch_size") is None:
        raise ConfigError(f"method={method} prompts the image tower of a ViT; model.name={name} has another image "
                          "tower; use a ViT such as model=vit_b16 (or model=tiny_vit).")  # fmt: skip
    prompt = cfg.method.get("prompt") or {}
    both = min(text.get("layers") or 0, vision.get("layers") or 0)
    for key, blocks in (("text_depth", text.get("layers")), ("vision_depth", vision.get("layers")), ("depth", both)):
        depth = prompt.get(key)
        if isinstance(depth, int) and isinstance(blocks, int) and depth > blocks:
            raise ConfigError(f"method.prompt.{key}={depth} but model.name={name} has {blocks} blocks in that tower "
                              f"(both, for depth); expected at most {blocks}.")  # fmt: skip


def group_configs(group: str) -> list[str]:
    """The configs Hydra can compose for ``group`` (``method=<name>``, ``experiment=<name>`` ...): the files of
    ``conf/<group>/`` without a leading underscore (those are the bases others inherit)."""
    from importlib.resources import files

    folder = files(CONFIG_MODULE).joinpath(group)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml") and not p.name.startswith("_"))


def method_configs() -> list[str]:
    """The method configs (``conf/method/``)."""
    return group_configs("method")


def model_config_for(name: str, pretrained: Any) -> str | None:
    """The model config (``model=<config>``, not ``auto``) whose architecture and weights are ``name`` and
    ``pretrained``, if one is."""
    from importlib.resources import files

    folder = files(CONFIG_MODULE).joinpath("model")
    for config in group_configs("model"):
        if config == "auto":
            continue
        node = OmegaConf.load(str(folder.joinpath(f"{config}.yaml")))
        if node.get("name") == name and node.get("pretrained") == pretrained:
            return config
    return None


def _check_method_class(cfg: DictConfig) -> None:
    """What the method's class says about itself (never its name): whether the rule may wrap it or must, whether
    it can classify classes it was not fitted on."""
    from prograd_pl.methods.build import check_options
    from prograd_pl.startup import import_heavy

    import_heavy()  # (the method's class imports torch: Ctrl-C held if nothing loaded it yet)
    cls = check_options(cfg.method)
    method, rule = str(cfg.method.name), str(cfg.method.get("rule", "none"))
    names = method_configs()
    if method not in names:  # the name labels results and rebuilds the recipe: it must be a method config
        raise ConfigError(f"method.name='{method}' is not one of {', '.join(names)} (the files of conf/method/).")
    if rule != "none" and not getattr(cls, "accepts_rule", False):
        raise ConfigError(f"method.rule={rule} cannot wrap method={method} ({cls.__name__}); use it with a method "
                          "that has a task gradient of its own to project, such as coop, cocoop or kgcoop.")  # fmt: skip
    if rule == "none" and getattr(cls, "requires_rule", False):
        raise ConfigError(f"method={method} ({cls.__name__}) is a method under ProGrad's rule and needs "
                          "method.rule=prograd; without the rule use the method it wraps (method=coop).")  # fmt: skip
    if getattr(cls, "prompts_image", False):
        _check_deep_prompts(cfg, method)
    if getattr(cls, "only_training_classes", False) and cfg.setting != "fewshot":
        raise ConfigError(f"method={method} classifies only its training classes; use setting=fewshot, "
                          f"not setting={cfg.setting}.")  # fmt: skip


def _check_target_node(node: DictConfig, where: str) -> None:
    import inspect

    from hydra.utils import get_object

    if "_target_" in node and where != "method":  # the method node's keys: methods.build.check_options
        target = str(node._target_)
        try:
            obj = get_object(target)
        except Exception as err:  # noqa: BLE001 - any import failure is the same sentence
            raise ConfigError(f"{where}._target_={target} cannot be imported ({type(err).__name__}).") from None
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):  # a builtin without a signature: nothing to compare
            params = None
        if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            names = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            unknown = [k for k in node if k not in _HYDRA_KEYS and k not in names]
            if unknown:
                close = difflib.get_close_matches(str(unknown[0]), names, n=1)
                listed = ", ".join(names) if len(names) <= 12 else f"{', '.join(names[:12])} ..."
                hint = f"did you mean {where}.{close[0]}?" if close else f"expected one of {listed}."
                raise ConfigError(f"{where}.{unknown[0]} is not an option of {target}; {hint}")
    for key, child in node.items():
        if isinstance(child, DictConfig) and (key not in _HYDRA_KEYS):
            _check_target_node(child, f"{where}.{key}")


def _check_path_length(key: str, value: str, room: int = 0) -> None:
    """No part of the path longer than the file system allows, and room below it for what a run writes."""
    path = Path(value).expanduser().absolute()
    probe = path
    while not os.path.exists(probe) and probe.parent != probe:  # (os.path: no ENAMETOOLONG raised)
        probe = probe.parent
    try:
        name_max = os.pathconf(probe, "PC_NAME_MAX")
        path_max = os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise ConfigError(f"{key} has a folder name of {len(os.fsencode(part))} bytes ('{part[:40]}...'); the "
                              f"file system allows {name_max}.")  # fmt: skip
    if len(os.fsencode(str(path))) + room > path_max:
        raise ConfigError(f"{key} is {len(os.fsencode(str(path)))} bytes long; runs need it shorter than "
                          f"{path_max - room} bytes (the file system's limit is {path_max}).")  # fmt: skip


def _nearest_existing(folder: Path) -> Path:
    folder = folder.expanduser().absolute()
    while not os.path.exists(folder) and folder.parent != folder:
        folder = folder.parent
    return folder


def _check_output_disk(cfg: DictConfig) -> None:
    """``output_root`` (or the folder it will be created in) must be on a writable file system with room for a run,
    checked before anything is written."""
    folder = _nearest_existing(Path(str(cfg.output_root)))
    try:
        stat = os.statvfs(folder)
    except OSError:
        return
    if stat.f_flag & os.ST_RDONLY:
        raise ConfigError(f"output_root={cfg.output_root} is on a read-only file system ({folder}); expected a folder "
                          "that can be written.")  # fmt: skip
    free = stat.f_bavail * stat.f_frsize
    if free < MIN_FREE_BYTES:
        raise ConfigError(f"output_root={cfg.output_root} has {free >> 20} MiB free on its file system; a run needs "
                          f"at least {MIN_FREE_BYTES >> 20} MiB.")  # fmt: skip
