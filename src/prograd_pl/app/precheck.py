"""Check a single run's command line before Hydra starts: a run that stops on its config writes nothing.

Hydra creates ``<output_root>/.hydra/<time>/`` (and fails with its own traceback on an ``output_root`` that is a
file, read-only or too long) before the task function runs. :func:`precheck` composes the same config with the
Compose API, resolves and checks it (and the dataset's folder and the weights), and returns the one sentence to
print instead. Multiruns are checked job by job inside the sweep (a failed job is named at its end).
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from omegaconf import DictConfig

from prograd_pl.errors import USER_ERRORS

HYDRA_FLAGS_WITHOUT_RUN = ("--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i",
                           "--shell-completion", "-sc", "--resolve", "-p", "--package")  # fmt: skip
"""Flags after which Hydra prints something instead of running (nothing to check)."""


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


def is_single_run(argv: Sequence[str]) -> bool:
    """Whether ``argv`` (overrides and flags) runs one job: no ``-m``, no printing flag, no config-path flags."""
    for arg in argv:
        if arg.startswith("-"):
            return False  # -m, --cfg, --config-dir ...: Hydra's own handling
    return True


def precheck(argv: Sequence[str], preflight: Callable[[DictConfig], None]) -> str | None:
    """The error sentence of a single run whose config cannot run, else None.

    ``preflight`` is the app's own check of a composed config (resolve, check, dataset folder, weights).
    """
    if not is_single_run(argv):
        return None
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from prograd_pl.app.config import compose

    try:
        cfg = compose(list(argv))
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        if isinstance(err, USER_ERRORS):
            return str(err)
        if "integer string conversion" in str(err):  # Python's 4300-digit limit, hit while parsing a number
            key, _, value = max(argv, key=len).partition("=")
            return f"{key} has {len(value)} digits; expected a number such as {key.lstrip('+~')}=1."
        return hydra_message(err)
    try:
        preflight(cfg)
    except USER_ERRORS as err:
        return str(err)
    return None
