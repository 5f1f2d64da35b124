"""Shared fixtures: the real Hydra config, shrunk for tests; tiny random-weight open_clip models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_backbone():
    import torch

    from prograd_pl.models.backbone import load_backbone

    # random weights from a fixed seed: the tests must not depend on which tests ran before
    state = torch.random.get_rng_state()
    torch.manual_seed(1)
    try:
        return load_backbone("prograd-tiny", None)
    finally:
        torch.random.set_rng_state(state)


def compose(overrides: list[str]):
    """The project's real config composed with ``overrides`` (as the command line would)."""
    from prograd_pl.app.config import compose as compose_config

    return compose_config(overrides)


def small_overrides(tmp_path: Path, *extra: str) -> list[str]:
    """Tiny model, one epoch, no workers, no progress bar, everything under ``tmp_path``."""
    return [
        "model=tiny",
        f"data_root={tmp_path / 'data'}",
        f"output_root={tmp_path / 'out'}",
        f"cache_root={tmp_path / 'cache'}",
        "trainer.max_epochs=1",
        "data.num_workers=0",
        "progress_bar=none",
        "logger=none",
        *extra,
    ]
