"""Where the project's pretrained ``prograd-mini`` weights live, a check that they are usable, and how open_clip
learns the ``prograd-mini`` architecture (``register_mini_config``)."""

from __future__ import annotations

import os
from pathlib import Path

from prograd_pl.errors import MiniWeightsError

MODEL_NAME = "prograd-mini"
MODEL_CONFIG = Path(__file__).resolve().parents[1] / "models" / "model_configs" / f"{MODEL_NAME}.json"
WEIGHTS_FILE = Path(__file__).resolve().parents[1] / "assets" / "prograd_mini.pt"
WEIGHTS_ENV = "PROGRAD_MINI_WEIGHTS"  # optional override of the file
REBUILD = "make pretrain-mini"  # = python tools/mini_pretrain.py --out src/prograd_pl/assets/prograd_mini.pt

_checked: dict[tuple[str, int, int], bool] = {}


def register_mini_config() -> None:
    """Make ``prograd-mini`` known to open_clip (idempotent)."""
    import open_clip

    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG)


def _fail(path: Path, problem: str) -> MiniWeightsError:
    return MiniWeightsError(
        f"prograd-mini weights {path} {problem}; rebuild them with `{REBUILD}` (about 13 minutes on 2 idle CPU cores)"
        f" or point ${WEIGHTS_ENV} at a good copy."
    )


def check_mini_weights(path: str | Path) -> Path:
    """Return ``path`` if it holds a prograd-mini state_dict that fits the architecture, else raise.

    Catches a missing file, a truncated or foreign file (e.g. a Git LFS pointer), and a state_dict whose
    keys or shapes do not match ``models/model_configs/prograd-mini.json``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise _fail(path, "not found")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if _checked.get(key):
        return path
    import torch

    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"version https://git-lfs"):
        raise _fail(path, "is a Git LFS pointer, not the weights (fetch them with `git lfs pull`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise _fail(
            path, f"is not a readable torch file (truncated or corrupt: {type(err).__name__})"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _fail(path, "is not a state_dict of tensors")
    expected = _expected_shapes()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise _fail(
            path, f"lacks {len(missing)} tensors of the prograd-mini architecture (e.g. {missing[0]})"
        )
    wrong = [k for k, shape in expected.items() if tuple(state[k].shape) != shape]
    if wrong:
        k = wrong[0]
        raise _fail(
            path, f"has {k} of shape {tuple(state[k].shape)}, expected {expected[k]} (other architecture?)"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise _fail(path, f"holds non-finite values (e.g. in {bad[0]})")
    _checked[key] = True
    return path


def _expected_shapes() -> dict[str, tuple[int, ...]]:
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
            model = open_clip.create_model(MODEL_NAME, device="meta")
    finally:
        root.removeFilter(not_random_init)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def mini_weights_path(check: bool = True) -> Path:
    """The prograd-mini weights file (``$PROGRAD_MINI_WEIGHTS`` or the packaged asset), checked by default."""
    env = os.environ.get(WEIGHTS_ENV)
    path = Path(env).expanduser() if env else WEIGHTS_FILE
    return check_mini_weights(path) if check else path
