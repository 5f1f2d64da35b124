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


def random_images(backbone, n: int, seed: int):
    """``n`` random images at ``backbone``'s input size, drawn from ``seed``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, backbone.image_size, backbone.image_size, generator=g)


def fit_one_step(module, images, labels) -> None:
    """One optimiser step of ``module`` on the batch ``(images, labels)`` through Lightning's Trainer on the CPU."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    trainer = L.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(images, labels), batch_size=len(labels)))


def _gloo_worker(rank, world, port, tmp, state_path, build, images, labels):
    import torch

    from prograd_pl.models.backbone import load_backbone

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    backbone = load_backbone("prograd-tiny", None)
    backbone.model.load_state_dict(torch.load(state_path, weights_only=True))
    module = build(backbone)
    half = len(labels) // world
    sl = slice(rank * half, (rank + 1) * half)
    grad, logs = module.compute_update(images[sl], labels[sl])
    if rank == 0:
        torch.save({"grad": grad, "cos": float(logs["grad_cos"])}, os.path.join(tmp, "ddp.pt"))
    torch.distributed.destroy_process_group()


def gloo_compute_update(backbone, build, images, labels, tmp_path: Path, world: int = 2) -> dict:
    """``build(backbone).compute_update`` in ``world`` gloo processes, each on its slice of the batch (real
    ``torch.distributed``, the same weights as ``backbone``): rank 0's ``{"grad", "cos"}``. ``build`` must be a
    module-level function (it is pickled to the spawned processes)."""
    import socket

    import torch
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state_path = tmp_path / "state.pt"
    torch.save(backbone.model.state_dict(), state_path)
    args = (world, port, str(tmp_path), str(state_path), build, images, labels)
    mp.spawn(_gloo_worker, args=args, nprocs=world, join=True)
    return torch.load(tmp_path / "ddp.pt", weights_only=True)


def method_module(
    backbone,
    learner,
    method: str = "prograd",
    *,
    rule: str = "none",
    rule_scope: str = "tensor",
    lam: float = 1.0,
    temperature: float = 1.0,
    template: str = "a photo of a {}.",
    lr: float = 0.002,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    max_epochs: int = 50,
    warmup_epochs: int = 1,
    warmup_lr: float = 1e-5,
    encoding: str = "auto",
    mixed_dtype=None,
    kg_weight: float = 8.0,
):
    """The :class:`PromptModule` of ``method`` (the name of its config file) around ``learner``, built from the
    method classes as the config's ``_target_`` does: ProGrad is CoOp's class under the rule, KD takes ``lam`` as
    its loss weight, every other method takes ``lam`` for the rule."""
    import functools

    import torch

    from prograd_pl.methods.cocoop import CoCoOp
    from prograd_pl.methods.coop import CoOp, ProGrad
    from prograd_pl.methods.kd import KD
    from prograd_pl.methods.kgcoop import KgCoOp
    from prograd_pl.methods.module import PromptModule
    from prograd_pl.methods.rule import ProGradRule
    from prograd_pl.methods.zeroshot import ZeroShot

    classes = {"coop": CoOp, "prograd": ProGrad, "kd": KD, "cocoop": CoCoOp, "kgcoop": KgCoOp, "zeroshot": ZeroShot}
    precision = {torch.bfloat16: "bf16-mixed", torch.float16: "16-mixed"}.get(mixed_dtype, "32")
    extra = {"kd": {"lam": lam, "temperature": temperature}, "kgcoop": {"kg_weight": kg_weight}}.get(method, {})
    names = learner.classnames if learner is not None else None
    instance = classes[method](backbone, names, template=template, prompt=learner, encoding=encoding,
                               precision=precision, **extra)  # fmt: skip
    if method == "prograd":
        rule = "prograd"
    the_rule = ProGradRule(lam=lam, temperature=temperature, scope=rule_scope) if rule == "prograd" else None
    optim = functools.partial(torch.optim.SGD, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return PromptModule(instance, rule=the_rule, optim=optim, max_epochs=max_epochs, warmup_epochs=warmup_epochs,
                        warmup_lr=warmup_lr)  # fmt: skip
