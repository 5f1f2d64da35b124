"""Preemption-safe training: ``<run_dir>/last.ckpt`` after every epoch, resumed exactly by a rerun.

The checkpoint is Lightning's own (loops, optimiser, counters) with the module's frozen CLIP weights dropped by
``PromptTuningModule.on_save_checkpoint``; :class:`ResumeState` adds every random state the next epoch draws from
(torch, CUDA, Python, NumPy and the train loader's shuffling generator), so a resumed run continues exactly as an
uninterrupted one would. Files are written to a temporary name and renamed: a run killed at any moment leaves the
previous complete ``last.ckpt`` or the new one, never a half-written file.

SIGTERM (``scancel``, a preempting scheduler) ends the run with exit status 143 after the last completed epoch's
checkpoint is on disk; on SLURM, Lightning's ``SLURMEnvironment(auto_requeue=True)`` saves and requeues on the
timeout signal (SIGUSR1 by default), and the requeued job resumes from the same folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger("prograd_pl")

LAST_NAME = "last.ckpt"
SIGTERM_EXIT = 143
SIGINT_EXIT = 130


def _numpy_state() -> dict[str, Any] | None:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with torch's wheels
        return None
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}  # fmt: skip


def _set_numpy_state(state: dict[str, Any] | None) -> None:
    if not state:
        return
    import numpy as np

    keys = state["keys"].numpy().astype("uint32")
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["gauss"]))


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The ``torch.Generator`` objects of a train loader (its sampler's shuffling and the workers' base seed)."""
    gens: list[torch.Generator] = []
    for g in (getattr(loader, "generator", None), getattr(getattr(loader, "sampler", None), "generator", None)):
        if isinstance(g, torch.Generator) and all(g is not h for h in gens):
            gens.append(g)
    return gens


class ResumeState(Callback):
    """Writes ``last.ckpt`` at the end of every ``every_n_epochs``-th epoch and carries the random states.

    Args:
        path: the checkpoint file (``<run_dir>/last.ckpt``).
        every_n_epochs: save after every n-th epoch (the final epoch's state is never needed: the run then writes
            ``prompt_learner.pt`` and ``results.json``).
    """

    def __init__(self, path: str | Path, every_n_epochs: int = 1, generators: list[torch.Generator] | None = None) -> None:
        self.path = Path(path)
        self.every_n_epochs = max(int(every_n_epochs), 1)
        self.generators = list(generators or [])
        self.resumed_epoch = 0
        self._restored = False

    # ---- what a checkpoint carries -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": _numpy_state(),
            "generators": [g.get_state() for g in self.generators],
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks before it creates the first resumed epoch's loader iterator (which already
        # fetches a batch), so the states are set here and nothing draws from them in between
        if len(self.generators) != len(state_dict["generators"]):
            raise RuntimeError(f"{self.path} holds {len(state_dict['generators'])} loader generator states, the run "
                               f"has {len(self.generators)}; delete it to start afresh.")  # fmt: skip
        for g, s in zip(self.generators, state_dict["generators"]):
            g.set_state(s)
        torch.set_rng_state(state_dict["torch"])
        random.setstate(_as_tuple(state_dict["python"]))
        _set_numpy_state(state_dict.get("numpy"))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        self._restored = True

    # ---- hooks ---------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.resumed_epoch = int(trainer.current_epoch) if self._restored else 0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1  # epochs completed
        if epoch % self.every_n_epochs or epoch >= (trainer.max_epochs or 0):
            return
        save_atomically(trainer, self.path)


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_atomically(trainer: L.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` to a temporary name beside ``path``, then rename (every rank must call it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp, weights_only=False)
    if trainer.is_global_zero:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    trainer.strategy.barrier("prograd_pl_last_ckpt")


def fit(trainer: L.Trainer, module: L.LightningModule, loader: Any, run_dir: Path,
        every_n_epochs: int = 1, enabled: bool = True, start_over: bool = False) -> int:  # fmt: skip
    """``trainer.fit`` that writes ``<run_dir>/last.ckpt`` while training and resumes from it when it exists.

    Returns the number of epochs the run resumed after (0 for a fresh start). SIGTERM ends the process with
    status 143 once the last completed epoch's state is on disk. ``start_over`` (``redo=true``) ignores and
    replaces an existing ``last.ckpt``.
    """
    last = Path(run_dir) / LAST_NAME
    if start_over and trainer.is_global_zero:
        remove_last(run_dir)
    trainer.strategy.barrier("prograd_pl_start_over")
    # Lightning's SLURM auto-requeue saves hpc_ckpt_<n>.ckpt in default_root_dir: keep it in the run folder, never
    # where another run would pick it up
    trainer._default_root_dir = str(run_dir)
    ckpt_path = None
    if enabled:
        trainer.callbacks.append(ResumeState(last, every_n_epochs, loader_generators(loader)))
        found = [p for p in (last, *Path(run_dir).glob("hpc_ckpt_*.ckpt")) if p.is_file()]
        if found:
            newest = max(found, key=lambda p: p.stat().st_mtime_ns)
            ckpt_path = str(newest)
            log.info("resuming from %s", newest)
    callback = next((c for c in trainer.callbacks if isinstance(c, ResumeState)), None)
    try:
        trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        log.warning("SIGTERM: stopping; %s resumes the run", last if last.is_file() else "nothing")
        sys.exit(SIGTERM_EXIT)
    except SystemExit:
        if trainer.interrupted:  # Ctrl-C: Lightning shut down gracefully and exits 1; say 130 as a shell would
            log.warning("SIGINT: stopping; %s resumes the run", last if last.is_file() else "nothing")
            sys.exit(SIGINT_EXIT)
        raise
    return callback.resumed_epoch if callback is not None else 0


def remove_last(run_dir: Path) -> None:
    """Delete ``last.ckpt`` (a stale temporary, Lightning's SLURM ``hpc_ckpt_*.ckpt``) once the results are written."""
    folder = Path(run_dir)
    for path in (folder / LAST_NAME, folder / f".{LAST_NAME}.tmp", *folder.glob("hpc_ckpt_*.ckpt")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
