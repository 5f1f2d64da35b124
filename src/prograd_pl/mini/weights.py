"""Where the project's pretrained mini CLIPs' weights live, a check that they are usable, and how open_clip learns
their architectures (``register_mini_config``).

Two models are pretrained on the mini world by the same recipe (``tools/mini_pretrain.py``): ``prograd-mini``
(a small ModifiedResNet image tower, ``model.pretrained=mini:``) and ``prograd-mini-vit`` (a 4-block ViT, for the
methods that prompt the image tower, ``model.pretrained=mini:vit``). Their text towers share one architecture.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from prograd_pl.errors import MiniWeightsError

_PACKAGE = Path(__file__).resolve().parents[1]
MODEL_CONFIG_DIR = _PACKAGE / "models" / "model_configs"


@dataclass(frozen=True)
class MiniModel:
    """One of the project's pretrained mini CLIPs: its open_clip name, ``model.pretrained`` value, packaged weights
    file and the environment variable that may point at another copy."""

    name: str
    pretrained: str
    file: Path
    env: str
    minutes: int  # to rebuild on 2 idle cores

    @property
    def rebuild(self) -> str:
        if self.name == MODEL_NAME:
            return "make pretrain-mini"
        return f"python tools/mini_pretrain.py --model {self.name} --out {self.file.relative_to(_PACKAGE.parents[1])}"


MODEL_NAME = "prograd-mini"
MINI_MODELS = {
    "prograd-mini": MiniModel("prograd-mini", "mini:", _PACKAGE / "assets" / "prograd_mini.pt",
                              "PROGRAD_MINI_WEIGHTS", 13),
    "prograd-mini-vit": MiniModel("prograd-mini-vit", "mini:vit", _PACKAGE / "assets" / "prograd_mini_vit.pt",
                                  "PROGRAD_MINI_VIT_WEIGHTS", 14),
}  # fmt: skip
WEIGHTS_ENV = MINI_MODELS[MODEL_NAME].env  # optional override of the file

_checked: dict[tuple[str, int, int, str], bool] = {}


def mini_model(pretrained: str) -> MiniModel:
    """The mini model a ``model.pretrained`` value ``mini:`` / ``mini:vit`` names (MiniWeightsError otherwise)."""
    for model in MINI_MODELS.values():
        if pretrained == model.pretrained:
            return model
    known = ", ".join(m.pretrained for m in MINI_MODELS.values())
    raise MiniWeightsError(f"model.pretrained={pretrained} names no mini model; expected one of {known}.")


def register_mini_config() -> None:
    """Make the mini architectures (and the project's other ones) known to open_clip (idempotent)."""
    import open_clip

    if any(name not in open_clip.list_models() for name in MINI_MODELS):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def _fail(path: Path, problem: str, model: str = MODEL_NAME) -> MiniWeightsError:
    spec = MINI_MODELS[model]
    return MiniWeightsError(
        f"{model} weights {path} {problem}; rebuild them with `{spec.rebuild}` (about {spec.minutes} minutes on 2 "
        f"idle CPU cores) or point ${spec.env} at a good copy."
    )


def check_mini_weights(path: str | Path, model: str = MODEL_NAME) -> Path:
    """Return ``path`` if it holds a state_dict of the mini architecture ``model`` that fits it, else raise.

    Catches a missing file, a truncated or foreign file (e.g. a Git LFS pointer), and a state_dict whose
    keys or shapes do not match ``models/model_configs/<model>.json``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise _fail(path, "not found", model)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, model)
    if _checked.get(key):
        return path
    import torch

    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"version https://git-lfs"):
        raise _fail(path, "is a Git LFS pointer, not the weights (fetch them with `git lfs pull`)", model)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise _fail(
            path, f"is not a readable torch file (truncated or corrupt: {type(err).__name__})", model
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _fail(path, "is not a state_dict of tensors", model)
    expected = _expected_shapes(model)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise _fail(
            path, f"lacks {len(missing)} tensors of the {model} architecture (e.g. {missing[0]})", model
        )
    wrong = [k for k, shape in expected.items() if tuple(state[k].shape) != shape]
    if wrong:
        k = wrong[0]
        raise _fail(
            path, f"has {k} of shape {tuple(state[k].shape)}, expected {expected[k]} (other architecture?)", model
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise _fail(path, f"holds non-finite values (e.g. in {bad[0]})", model)
    _checked[key] = True
    return path


def _expected_shapes(name: str = MODEL_NAME) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of the architecture, from a model built on the meta device: no memory, no weights drawn (the
    global RNG is untouched, so loading never changes a seeded run), and open_clip's "initialized randomly"
    warning, which would be false for the run that follows, is not shown."""
    import logging

    import open_clip
    import torch

    def not_random_init(record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()

    register_mini_config()
    root = logging.getLogger()
    root.addFilter(not_random_init)
    try:
        with torch.device("meta"):
            model = open_clip.create_model(name, device="meta")
    finally:
        root.removeFilter(not_random_init)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def mini_weights_path(check: bool = True, model: str = MODEL_NAME) -> Path:
    """The weights file of mini model ``model`` (its environment variable, e.g. ``$PROGRAD_MINI_WEIGHTS``, or the
    packaged asset), checked by default."""
    spec = MINI_MODELS[model]
    env = os.environ.get(spec.env)
    path = Path(env).expanduser() if env else spec.file
    return check_mini_weights(path, model) if check else path
