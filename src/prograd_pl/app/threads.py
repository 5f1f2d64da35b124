"""``threads``: torch's CPU threads for a run, chosen from the model's size and the cores when not given.

Measured on 2 shared cores (the mini model, 20 epochs of a 4-shot mini task): 13-17 s with 1 thread against
29-38 s with torch's default of 2; the issue's full mini run took 31 s with 1 thread and 1 min 19 s with the default.
A small model's matrix products are too small to split across threads, and extra threads only contend with the
data loading and with the other jobs of a sweep. Large backbones (RN50, ViT-B/16) keep torch's default (one thread
per physical core).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

log = logging.getLogger("prograd_pl")

TORCH_DEFAULT = torch.get_num_threads()
"""torch's own choice, restored for a large model after a small one in the same process (a sweep's jobs)."""

SMALL_MODEL_PARAMS = 20_000_000
"""Below this many parameters (prograd-mini 4.7 M, prograd-tiny 2.9 M; RN50 102 M) a model counts as small."""


def default_threads(n_params: int, cores: int | None = None) -> int | None:
    """The thread count for a model of ``n_params`` parameters on ``cores`` cores, or None for torch's default:
    1 for a small model on up to 4 cores, 2 above (not measured here: the machines have 2 cores)."""
    if n_params >= SMALL_MODEL_PARAMS:
        return None
    cores = cores or os.cpu_count() or 1
    return 1 if cores <= 4 else 2


def apply_threads(threads: int | None, model: Any) -> int:
    """Set torch's CPU threads: ``threads`` when given, else :func:`default_threads` for ``model``; returns the
    count in use."""
    if threads is None:
        threads = default_threads(sum(p.numel() for p in model.parameters()))
    torch.set_num_threads(int(threads) if threads is not None else TORCH_DEFAULT)
    return torch.get_num_threads()
