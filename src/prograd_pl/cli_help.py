"""``prograd-pl --help``: the sub-commands, the public config groups with their options, examples.

Built from the config files themselves (``prograd_pl.conf``) without importing Hydra, torch or the app, so it
answers at once. Groups and options whose name starts with ``_`` are private building blocks and not listed.
"""

from __future__ import annotations

import textwrap
from importlib import resources
from typing import Iterable

WIDTH = 110

SUBCOMMAND_HELP = {
    "report": "tables (Markdown, CSV, LaTeX) and figures (PNG, PDF) from the results.json files under a folder",
    "diff": "the config values that differ between two run folders (or cfg-<digest> folders)",
    "interpret": "the vocabulary words nearest to each learned context vector of a run",
    "data": "download | prepare | check | list the datasets under data_root",
    "weights": "where a backbone's weights come from: weights where <model> <tag>",
}

GROUP_ORDER = ("dataset", "model", "method", "trainer", "logger", "progress_bar", "experiment")

EXAMPLES = (
    ("prograd-pl", "ProGrad on the default mini task, offline"),
    ("prograd-pl dataset=dtd shots=4 -m seed=1,2,3", "the paper's recipe on DTD, 3 seeds"),
    ("prograd-pl dataset=oxford_pets setting=base2new method=coop", "train on base classes, test base + new"),
    ("prograd-pl dataset=dtd shots=8 --cfg job --resolve", "print the config that would run"),
    ("prograd-pl model=tiny trainer.max_epochs=2 progress_bar=lines", "a smoke run, progress as log lines"),
    ("prograd-pl report outputs", "the tables of every run under outputs/"),
)

TOP_LEVEL = ("shots, seed, setting (fewshot|base2new|dg|xd), data_root, output_root, eval_datasets, ckpt, redo, "
             "threads (null: chosen from the model size and the cores), feature_cache, cache_root, "
             "continue_on_error, checkpoint.{resume,every_n_epochs,keep_last}")  # fmt: skip


def _public(names: Iterable[str]) -> list[str]:
    return sorted(n for n in names if not n.startswith(("_", ".")))


def config_groups() -> dict[str, list[str]]:
    """Public group -> its public options, read from the installed config files."""
    root = resources.files("prograd_pl.conf")
    groups: dict[str, list[str]] = {}
    for entry in root.iterdir():
        if entry.is_dir() and entry.name != "hydra" and not entry.name.startswith(("_", ".")):
            options = _public(f.name[: -len(".yaml")] for f in entry.iterdir() if f.name.endswith(".yaml"))
            if options:
                groups[entry.name] = options
    order = {g: i for i, g in enumerate(GROUP_ORDER)}
    return dict(sorted(groups.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def defaults() -> dict[str, str]:
    """Group -> default option, from ``config.yaml``'s defaults list (read as text: no YAML parser needed)."""
    text = resources.files("prograd_pl.conf").joinpath("config.yaml").read_text(encoding="utf-8")
    found: dict[str, str] = {}
    in_defaults = False
    for line in text.splitlines():
        if line.startswith("defaults:"):
            in_defaults = True
            continue
        if in_defaults:
            if not line.startswith(" "):
                break
            item = line.split("#", 1)[0].strip().removeprefix("- ").strip()
            key, sep, value = item.partition(":")
            if sep and not key.startswith(("optional", "override")):
                found[key.strip()] = value.strip()
    return found


def _wrapped(label: str, text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=f"  {label:<16} ", subsequent_indent=" " * 19)


def help_text(subcommands: Iterable[str]) -> str:
    """The whole page."""
    lines = [
        "usage: prograd-pl [OVERRIDE ...] [-m OVERRIDE ...]   one run (or a sweep with -m) of the Hydra app",
        "       prograd-pl SUBCOMMAND [ARG ...]               (each sub-command has its own --help)",
        "",
        "Prompt tuning of CLIP (ProGrad, CoOp, KD, CoCoOp, KgCoOp, zero-shot, linear probe) with Lightning, Hydra",
        "and open_clip. `python -m prograd_pl` is the same program.",
        "",
        "sub-commands:",
    ]
    lines += [f"  {name:<10} {SUBCOMMAND_HELP.get(name, '')}" for name in subcommands]
    lines += ["", "config groups (group=option; * the default):"]
    chosen = defaults()
    for group, options in config_groups().items():
        marked = [f"{o}*" if chosen.get(group) == o else o for o in options]
        lines += _wrapped(f"{group}=", " ".join(marked))
    lines += _wrapped("hydra/launcher=", "local_parallel (joblib processes) slurm (submitit)")
    lines += [
        "",
        *textwrap.wrap(f"top-level keys: {TOP_LEVEL}.", WIDTH, subsequent_indent="  "),
        "Any value can be set with key.sub=value (e.g. method.lam=0.8, trainer.max_epochs=10, data.batch_size=16).",
        "",
        "examples:",
    ]
    width = max(len(cmd) for cmd, _ in EXAMPLES)
    lines += [f"  {cmd:<{width}}  # {what}" for cmd, what in EXAMPLES]
    lines += [
        "",
        "--cfg job --resolve prints the resolved config; --hydra-help lists Hydra's own flags.",
    ]
    return "\n".join(lines)
