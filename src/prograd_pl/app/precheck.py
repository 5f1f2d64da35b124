"""Check a command line before Hydra starts: a run (or a whole sweep) that stops on its config writes nothing.

Hydra creates ``<output_root>/.hydra/<time>/`` (and fails with its own traceback on an ``output_root`` that is a
file, read-only or too long) before the task function runs. :func:`precheck` composes the same config with the
Compose API, resolves and checks it (and the dataset's folder, the weights and the free space), and returns the one
sentence to print instead. :func:`precheck_sweep` does the same for a multirun: it expands the sweep as Hydra's
basic sweeper will (the sweeper's own ``split_arguments`` over the experiment's ``hydra.sweeper.params`` and the
command line), composes each distinct job once and checks it; a sweep whose every job fails (or any job, when it
cannot compose, or under ``continue_on_error=false``) is refused before Hydra creates its folder, and a sweep with
valid jobs runs them, naming the failed ones at its end (:mod:`prograd_pl.app.sweep_failures`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from omegaconf import DictConfig, OmegaConf

from prograd_pl.errors import USER_ERRORS, ConfigError

HYDRA_FLAGS_WITHOUT_RUN = ("--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i",
                           "--shell-completion", "-sc", "--resolve", "-p", "--package")  # fmt: skip
"""Flags after which Hydra prints something instead of running (nothing to check)."""
MULTIRUN_FLAGS = ("-m", "--multirun")
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher", "LocalLauncher")
"""Launchers whose jobs run on this machine: only their jobs' data, devices and disks can be checked here (a SLURM
job checks its own on its node)."""
MAX_PROBLEM_LINES = 3


def hydra_message(err: BaseException) -> str:
    """One sentence from Hydra's multi-line composition errors (unknown key, unknown group option, bad override)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if not lines:
        return f"the command line cannot be composed ({type(err).__name__})."
    head = re.sub(r"^In '[^']*': ", "", lines[0])
    missing = re.match(r"Could not find '([^']+)/([^'/]+)'", head)
    if missing and "Available options" in str(err):
        options = [ln for ln in lines[1:] if not ln.endswith(":") and " " not in ln and not ln.startswith("_")]
        group, name = missing.groups()
        return f"{group}={name} is not a config of {group}; expected one of {', '.join(options)}."
    if head.startswith("Ambiguous value"):
        return f"{head}; quote it to pass one string (key='a,b'), write key=[a,b] for a list, or add -m to sweep."
    if len(lines) > 1 and lines[1].startswith("To append"):
        return f"{head} {lines[1]}."
    if "override_grammar" in str(err) or "mismatched input" in head or "no viable alternative" in head:
        return f"an override cannot be parsed ({head}); quote values with special characters: 'key=\"a=b,c\"'."
    return head if head.endswith(".") else f"{head}."


def _is_multirun_override(arg: str) -> bool:
    return arg.replace(" ", "") == "hydra.mode=MULTIRUN"


def is_single_run(argv: Sequence[str]) -> bool:
    """Whether ``argv`` (overrides and flags) runs one job: no ``-m``, no printing flag, no config-path flags."""
    for arg in argv:
        if arg.startswith("-") or _is_multirun_override(arg):
            return False  # -m, --cfg, --config-dir ...: Hydra's own handling
    return True


def sweep_overrides(argv: Sequence[str]) -> list[str] | None:
    """The overrides of a multirun (``-m`` or ``hydra.mode=MULTIRUN``) given with no other flag, else None (a
    single run, or a flag such as ``--cfg job`` or ``--config-dir`` that Hydra handles itself)."""
    flags = [a for a in argv if a.startswith("-")]
    if any(f not in MULTIRUN_FLAGS for f in flags):
        return None
    if not flags and not any(_is_multirun_override(a) for a in argv):
        return None
    return [a for a in argv if not a.startswith("-")]


def _compose_problem(err: BaseException, overrides: Sequence[str]) -> str:
    if isinstance(err, USER_ERRORS):
        return str(err)
    if "integer string conversion" in str(err):  # Python's 4300-digit limit, hit while parsing a number
        key, _, value = max(overrides, key=len).partition("=")
        return f"{key} has {len(value)} digits; expected a number such as {key.lstrip('+~')}=1."
    return hydra_message(err)


def _composition_errors() -> tuple[type[BaseException], ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return (HydraException, OmegaConfBaseException, ValueError)


def precheck(argv: Sequence[str], preflight: Callable[[DictConfig], None]) -> str | None:
    """The error sentence of a single run whose config cannot run, else None.

    ``preflight`` is the app's own check of a composed config (resolve, check, dataset folder, weights); the free
    space of ``output_root`` and ``cache_root`` is checked after it (:func:`check_free_space`).
    """
    if not is_single_run(argv):
        return None
    from prograd_pl.app.config import compose

    try:
        cfg = compose(list(argv))
    except _composition_errors() as err:
        return _compose_problem(err, argv)
    try:
        preflight(cfg)
        check_free_space([disk_needs(cfg)])
    except USER_ERRORS as err:
        return str(err)
    return None


# ---- multiruns -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _hydra_initialized() -> Iterator[None]:
    """Hydra's Compose API over the project's configs (the one already initialised, inside a test's block)."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from prograd_pl.app.config import CONFIG_MODULE

    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        yield


@dataclass
class SweepPlan:
    """A multirun as Hydra will launch it: each job's overrides (after the command line's ``hydra`` ones) and
    whether its launcher runs the jobs on this machine. ``jobs`` is None when the sweeper is not Hydra's basic one
    (it expands the sweep its own way: nothing to check here)."""

    hydra_overrides: list[str]
    jobs: list[list[str]] | None
    local: bool = True
    continue_on_error: bool = True


def expand_sweep(overrides: Sequence[str]) -> SweepPlan:
    """Each job of the multirun ``overrides``, expanded as Hydra's basic sweeper expands it.

    The primary config is composed without the sweep overrides (as Hydra composes a multirun's config) to read
    ``hydra.sweeper`` (an experiment's ``params``) and ``hydra.launcher``; the sweeper's params then the command
    line's task overrides are parsed by Hydra's ``OverridesParser`` (choice, ``range()``, ``glob()`` over a group's
    options) and split into jobs by ``BasicSweeper.split_arguments``: the same jobs, in the same order. Must run
    inside an initialised Hydra (:func:`_hydra_initialized`). Raises Hydra's own errors.
    """
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    parsed = parser.parse_overrides(list(overrides))
    hydra_overrides = [o.input_line for o in parsed if o.is_hydra_override()]
    task = [o.input_line for o in parsed if not o.is_hydra_override()]
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    primary = hydra_compose(config_name="config", overrides=fixed, return_hydra_config=True)
    sweeper = str(OmegaConf.select(primary, "hydra.sweeper._target_", default=""))
    launcher = str(OmegaConf.select(primary, "hydra.launcher._target_", default=""))
    local = launcher.rsplit(".", 1)[-1] in LOCAL_LAUNCHERS
    stop = OmegaConf.select(primary, "continue_on_error", default=True) is not True
    if sweeper.rsplit(".", 1)[-1] != "BasicSweeper":
        return SweepPlan(hydra_overrides, None, local, not stop)
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = OmegaConf.select(primary, "hydra.sweeper.params")
    params = OmegaConf.to_container(params, resolve=True) if params is not None else {}
    parsed_task = parser.parse_overrides([*(f"{k}={v}" for k, v in (params or {}).items()), *task])
    (jobs,) = BasicSweeper.split_arguments(parsed_task, None) or [[]]
    return SweepPlan(hydra_overrides, [list(j) for j in jobs], local, not stop)


class JobComposer:
    """Each job's config as Hydra composes it, composing the defaults list once per distinct set of config-group
    overrides (``dataset=``, ``method=``, ``experiment=`` and every ``hydra`` override) and applying the value
    overrides (``seed=2``, ``+callbacks.x=...``) to a copy with Hydra's own ``_apply_overrides_to_config``, which
    Hydra itself applies after composing: a sweep of 3 seeds composes once, not 3 times. Must be used inside an
    initialised Hydra."""

    def __init__(self, hydra_overrides: Sequence[str] = ()) -> None:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.hydra_overrides = list(hydra_overrides)
        self.loader = GlobalHydra.instance().config_loader()
        self.parser = OverridesParser.create(config_loader=self.loader)
        self.bases: dict[tuple[str, ...], DictConfig] = {}

    def _is_group(self, override) -> bool:
        if override.is_hydra_override():
            return True
        return self.loader.repository.group_exists(override.key_or_group) and not isinstance(override.value(), dict)

    def compose(self, job: Sequence[str]) -> DictConfig:
        """The job's composed config (without Hydra's node), raising Hydra's errors as ``compose`` would."""
        import copy

        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        from prograd_pl.app.config import compose

        parsed = self.parser.parse_overrides([*self.hydra_overrides, *job])
        key = tuple(o.input_line for o in parsed if self._is_group(o))
        if key not in self.bases:
            self.bases[key] = compose(list(key))
        cfg = copy.deepcopy(self.bases[key])
        ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if not self._is_group(o)], cfg)
        return cfg


def precheck_sweep(argv: Sequence[str], preflight: Callable[[DictConfig], None]) -> list[str]:
    """The error sentences of a multirun that must not start (empty when it may).

    A job that cannot be composed (``dataset=nosuch``) stops the whole sweep, as Hydra's sweeper would, but with
    one sentence. Each distinct job is composed and checked once (``preflight``, then the free space all valid
    jobs need together); when none is valid, or any is not under ``continue_on_error=false``, each distinct
    problem is one sentence (at most :data:`MAX_PROBLEM_LINES`). A sweep with valid jobs starts: its failed jobs
    are named at its end.
    """
    overrides = sweep_overrides(argv)
    if overrides is None:
        return []
    errors = _composition_errors()
    with _hydra_initialized():
        try:
            plan = expand_sweep(overrides)
        except errors as err:
            return [_compose_problem(err, overrides)]
        if plan.jobs is None:
            return []
        problems: dict[str, list[list[str]]] = {}
        valid: list[DictConfig] = []
        stop = not plan.continue_on_error
        composer = JobComposer(plan.hydra_overrides)
        for job in dict.fromkeys(tuple(j) for j in plan.jobs):  # each distinct job once, in the sweep's order
            try:
                cfg = composer.compose(job)
            except errors as err:
                return [_compose_problem(err, job)]
            if not plan.local:
                continue
            try:
                preflight(cfg)
            except USER_ERRORS as err:
                problems.setdefault(str(err), []).append(list(job))
                stop = stop or cfg.get("continue_on_error", True) is not True
                continue
            valid.append(cfg)
    if problems and (stop or not valid):
        return problem_lines(problems, stop and bool(valid))
    try:
        check_free_space([disk_needs(cfg) for cfg in valid])
    except USER_ERRORS as err:
        return [str(err)]
    return []


def problem_lines(problems: dict[str, list[list[str]]], stopping: bool = False) -> list[str]:
    """At most :data:`MAX_PROBLEM_LINES` sentences for the failed jobs of a sweep, one per distinct problem."""
    lines = list(problems)
    if len(lines) > MAX_PROBLEM_LINES:
        others = lines[MAX_PROBLEM_LINES - 1 :]
        n_jobs = sum(len(problems[p]) for p in others)
        jobs = [job for found in problems.values() for job in found]
        first = " ".join(o for o in problems[others[0]][0] if not all(o in job for job in jobs)) or "(every job)"
        lines = [*lines[: MAX_PROBLEM_LINES - 1], f"{n_jobs} more job(s) of the sweep fail on their config for "
                 f"{len(others)} other reason(s), the first of them {first}."]  # fmt: skip
    if stopping:  # continue_on_error=false: the valid jobs would run until the first failed one
        lines[-1] = (f"{lines[-1].rstrip('.')}; continue_on_error=false stops the sweep at its first failed job, so "
                     "none was started.")  # fmt: skip
    return lines


# ---- free space ------------------------------------------------------------------------------------------------
RUN_MARGIN_BYTES = 8 << 20
"""Room for what a run writes besides its tensors: log.txt, Lightning's metrics.csv and hparams.yaml, temporaries."""
RESULT_BYTES = 64 << 10
"""One results.json (its config, identity, versions and per-class accuracies)."""
OPTIMIZER_SLOTS = 2
"""Tensors an optimiser keeps per learned tensor in ``last.ckpt`` (SGD momentum: 1; Adam: 2)."""
CKPT_OVERHEAD_BYTES = 256 << 10
"""A checkpoint's fixed part: class names and prompt metadata; in ``last.ckpt`` the loops and the random states."""
CACHE_ENTRY_OVERHEAD_BYTES = 4 << 10


@dataclass(frozen=True)
class ModelDims:
    """The sizes of a backbone that what a run writes depends on."""

    embed_dim: int = 1024  # image/text feature dimension (a cached test feature)
    text_width: int = 1024  # one context vector


@functools.lru_cache(maxsize=None)
def model_dims(name: str) -> ModelDims:
    """The open_clip model config's feature dimension and text width (large defaults for a model it lacks)."""
    import open_clip

    from prograd_pl.models.backbone import register_model_configs

    register_model_configs()
    cfg = open_clip.get_model_config(name) or {}
    text = cfg.get("text_cfg") or {}
    return ModelDims(int(cfg.get("embed_dim") or 1024), int(text.get("width") or cfg.get("embed_dim") or 1024))


def learned_floats(cfg: DictConfig, n_classes: int, dims: ModelDims) -> int:
    """How many numbers a run learns: its context (one per class when ``csc``), a meta-net (``hidden_ratio``), or a
    linear head; 0 for a run that does not train (zero-shot, ``trainer.max_epochs=0``, ``ckpt=``)."""
    if int(cfg.trainer.max_epochs) <= 0 or cfg.get("ckpt") is not None or not _method_trait(cfg, "trains", True):
        return 0
    prompt = cfg.method.get("prompt")
    if prompt is None:  # a head over the image features (the linear probe)
        return n_classes * (dims.embed_dim + 1)
    n = int(prompt.n_ctx) * dims.text_width * (n_classes if bool(prompt.get("csc", False)) else 1)
    ratio = prompt.get("hidden_ratio")
    if ratio:
        hidden = max(dims.embed_dim // int(ratio), 1)
        n += dims.embed_dim * hidden + hidden + hidden * dims.text_width + dims.text_width
    return n


def _method_trait(cfg: DictConfig, name: str, default: bool) -> bool:
    """A class trait of the configured method (``trains``, ``prompts_image``), ``default`` when it cannot be read."""
    from hydra.utils import get_class

    try:
        return bool(getattr(get_class(str(cfg.method._target_)), name, default))
    except Exception:  # noqa: BLE001 - an unknown target is named by the config check
        return default


def expected_run_bytes(cfg: DictConfig, n_classes: int, n_evals: int, dims: ModelDims) -> int:
    """What a run writes under ``output_root`` at its peak: results.json (one per extra evaluation too), identity,
    config and logs (:data:`RUN_MARGIN_BYTES`), the trained context checkpoint, and ``last.ckpt`` (the learned
    tensors, the optimiser's state) twice while it is replaced (the temporary beside the previous one)."""
    floats = learned_floats(cfg, n_classes, dims)
    if floats == 0:
        return RUN_MARGIN_BYTES + (1 + n_evals) * RESULT_BYTES
    context = 4 * floats + CKPT_OVERHEAD_BYTES
    last = 4 * floats * (1 + OPTIMIZER_SLOTS) + CKPT_OVERHEAD_BYTES
    return RUN_MARGIN_BYTES + (1 + n_evals) * RESULT_BYTES + context + 2 * last


def expected_cache_bytes(n_test: int, dims: ModelDims) -> int:
    """One feature-cache entry: ``n_test`` float32 features of ``dims.embed_dim`` and int64 labels."""
    return n_test * (4 * dims.embed_dim + 8) + CACHE_ENTRY_OVERHEAD_BYTES


@dataclass
class DiskNeed:
    """What one run writes: ``run_bytes`` under ``output_root``; under ``cache_root`` the feature-cache entries it
    may add, by a key that runs sharing an entry share (dataset, backbone, weights, the seed of random weights)."""

    output_root: str
    run_bytes: int
    cache_root: str | None = None
    cache: dict[tuple, int] = field(default_factory=dict)


def _counts(name: str, subsample: str) -> tuple[int, int]:
    """(classes, test images) of a dataset from the registry's published sizes (an upper bound for a subset)."""
    from prograd_pl.data.registry import get_dataset_info

    info = get_dataset_info(name)
    n_classes = info.n_classes or 1000  # a folder dataset: not known before it is listed
    n_test = info.sizes[2] if info.sizes else 0
    if subsample != "all":
        n_classes, n_test = (n_classes + 1) // 2, (n_test + 1) // 2
    return n_classes, n_test


def disk_needs(cfg: DictConfig) -> DiskNeed:
    """The :class:`DiskNeed` of a composed config (reading only the options it needs, each resolved on access)."""
    from prograd_pl.app.run import eval_targets

    eval_datasets = cfg.get("eval_datasets")
    if isinstance(eval_datasets, str):  # a single value is a list of one (config.single_values_as_lists)
        eval_datasets = [eval_datasets]
    dataset, setting = str(cfg.dataset.name), str(cfg.setting)
    view = OmegaConf.create({"dataset": {"name": dataset}, "setting": setting, "eval_datasets": eval_datasets})
    dims = model_dims(str(cfg.model.name))
    own = "base" if setting == "base2new" else "all"
    targets = [(dataset, own), *eval_targets(view)]
    n_classes, _ = _counts(dataset, own)
    need = DiskNeed(str(cfg.output_root), expected_run_bytes(cfg, n_classes, len(targets) - 1, dims))
    if cfg.get("feature_cache", True) is True and not _method_trait(cfg, "prompts_image", False):
        need.cache_root = str(cfg.cache_root)
        pretrained = cfg.model.get("pretrained")
        weights = (str(cfg.model.name), str(pretrained), int(cfg.seed) if pretrained is None else None)
        for name, sub in targets:
            need.cache[(name, sub, *weights)] = expected_cache_bytes(_counts(name, sub)[1], dims)
    return need


def _nearest_existing(folder: str) -> Path:
    path = Path(folder).expanduser().absolute()
    while not os.path.exists(path) and path.parent != path:
        path = path.parent
    return path


def _size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def check_free_space(needs: Sequence[DiskNeed]) -> None:
    """Refuse (one :class:`ConfigError` sentence) when the file system of ``output_root`` lacks room for what the
    runs write there (plus their feature cache when ``cache_root`` is on the same file system), or that of
    ``cache_root`` lacks room for the cache entries (counted once however many runs share one)."""
    if not needs:
        return
    outputs: dict[str, int] = {}
    caches: dict[str, dict[tuple, int]] = {}
    for need in needs:
        outputs[need.output_root] = outputs.get(need.output_root, 0) + need.run_bytes
        if need.cache_root is not None:
            caches.setdefault(need.cache_root, {}).update(need.cache)
    device = {}
    for folder in [*outputs, *caches]:
        with contextlib.suppress(OSError):
            device[folder] = os.stat(_nearest_existing(folder)).st_dev
    for folder, run_bytes in outputs.items():
        shared = [c for c in caches if folder in device and device.get(c) == device[folder]]
        cache_bytes = sum(sum(caches[c].values()) for c in shared)
        what = "results, checkpoints and logs" + (f", and the feature cache of cache_root={shared[0]}" if shared else "")
        _require(f"output_root={folder}", folder, run_bytes + cache_bytes, what, len(needs))
    for folder, entries in caches.items():
        _require(f"cache_root={folder}", folder, sum(entries.values()), "the feature cache of the test images",
                 len(needs), hint="; set feature_cache=false or point cache_root at a folder with room")  # fmt: skip


def _require(name: str, folder: str, need: int, what: str, n_runs: int, hint: str = "") -> None:
    try:
        free = shutil.disk_usage(_nearest_existing(folder)).free
    except OSError:
        return  # no file system to ask: the write itself reports it
    if free < need:
        runs = "this run writes" if n_runs == 1 else f"the sweep's {n_runs} runs write"
        raise ConfigError(f"{name} has {_size(free)} free on its file system; {runs} up to {_size(need)} there "
                          f"({what}){hint}; expected at least {_size(need)} free.")  # fmt: skip
