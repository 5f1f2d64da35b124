"""The ``method`` config node -> what runs: a :class:`PromptModule` around the node's method class, or a pipeline
(the linear probe) when ``_target_`` names something that is not a :class:`PromptMethod`.

The node holds four kinds of keys, told apart here and nowhere else:

* ``name``, ``epochs``, ``batch_size``, ``uses_shots``: the run's label and recipe, read by the config and the app;
* ``rule``, ``rule_scope``, ``lam``, ``temperature``: ProGrad's rule (``lam`` and ``temperature`` also reach a
  method that takes them, as KD does);
* ``optim``, ``max_epochs``, ``warmup_epochs``, ``warmup_lr``: the optimiser and its schedule (the module's);
* everything else: the method class's own arguments (``template``, ``prompt``, ``encoding``, ``precision``,
  ``kg_weight`` ...).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from prograd_pl.errors import ConfigError

RECIPE_KEYS = ("name", "epochs", "batch_size", "uses_shots")
RULE_KEYS = ("rule", "rule_scope", "lam", "temperature")
MODULE_KEYS = ("optim", "max_epochs", "warmup_epochs", "warmup_lr")
HYDRA_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")


def method_class(node: DictConfig) -> type:
    """The class (or pipeline) the node's ``_target_`` names."""
    from hydra.utils import get_class

    try:
        return get_class(str(node._target_))
    except Exception as err:  # noqa: BLE001 - any import failure is the same sentence
        raise ConfigError(f"method._target_={node.get('_target_')} cannot be imported ({type(err).__name__}).") from None


def class_options(cls: type) -> list[str]:
    """The keyword arguments ``cls`` takes, following ``**kwargs`` up its base classes."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return list(dict.fromkeys(names))


def check_options(node: DictConfig) -> type:
    """Every key of the node is one this module or the method class reads: ``+method.lamda=0.5`` is one sentence
    here, before anything runs.  Returns the class."""
    cls = method_class(node)
    own = class_options(cls)
    known = [*RECIPE_KEYS, *RULE_KEYS, *MODULE_KEYS, *own]
    unknown = [k for k in node if k not in HYDRA_KEYS and k not in known]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), known, n=1)
        hint = f"did you mean method.{close[0]}?" if close else f"expected one of {', '.join(known)}."
        raise ConfigError(f"method.{unknown[0]} is not an option of {node._target_}; {hint}")
    return cls


def is_prompt_method(cls: type) -> bool:
    from prograd_pl.methods.base import PromptMethod

    return isinstance(cls, type) and issubclass(cls, PromptMethod)


def build(node: DictConfig, backbone: Any, classnames: Sequence[str], seed: int, prompt: Any = None) -> Any:
    """What the node describes, for this backbone and these classes: a :class:`PromptModule` (``prompt``, a
    learner restored from a checkpoint, replaces the configured one), or the node's pipeline."""
    from hydra.utils import instantiate

    cls = check_options(node)
    own = set(class_options(cls))
    if not is_prompt_method(cls):  # a pipeline (the linear probe): its own options only
        data = OmegaConf.to_container(node, resolve=True)
        kwargs = {k: v for k, v in data.items() if k in own or k in HYDRA_KEYS}
        return instantiate(kwargs, _partial_=True)(backbone, list(classnames), seed=seed)
    from prograd_pl.methods.module import PromptModule
    from prograd_pl.methods.rule import RULES

    data = OmegaConf.to_container(node, resolve=True)
    extra: dict[str, Any] = {"seed": seed} if "seed" in own else {}
    if prompt is not None:
        extra["prompt"] = prompt
    own_node = {k: v for k, v in data.items() if k in HYDRA_KEYS or k in own}
    method = instantiate(own_node, _partial_=True)(backbone, list(classnames), **extra)
    rule_name = str(node.get("rule", "none"))
    rule_cls = RULES.get(rule_name)
    if rule_name not in RULES:
        raise ConfigError(f"method.rule='{rule_name}' is not one of {', '.join(RULES)}.")
    rule = None
    if rule_cls is not None:
        rule = rule_cls(lam=float(node.get("lam") or 0.0), temperature=float(node.get("temperature", 1.0)),
                        scope=str(node.get("rule_scope", "tensor")))  # fmt: skip
    module_opts = {k: data[k] for k in ("max_epochs", "warmup_epochs", "warmup_lr") if k in data}
    optim = instantiate(data["optim"]) if data.get("optim") is not None else None
    return PromptModule(method, rule=rule, optim=optim, **module_opts)
