"""Preemption-safe training: ``<run_dir>/last.ckpt`` after every epoch, resumed exactly by a rerun.

The checkpoint is Lightning's own (loops, optimiser, counters) with the module's frozen CLIP weights dropped by
``PromptTuningModule.on_save_checkpoint``; :class:`ResumeState` adds every random state the next epoch draws from
(torch, CUDA, Python, NumPy and the train loader's shuffling generator), so a resumed run continues exactly as an
uninterrupted one would. Files are written to a temporary name and renamed: a run killed at any moment leaves the
previous complete ``last.ckpt`` or the new one, never a half-written file; a full or read-only disk leaves the
previous one and no temporary file. A ``last.ckpt`` that cannot resume the run (truncated, empty, crafted, of other
tensors) is moved aside to ``last.ckpt.corrupt-<time>`` with one warning and the run trains from the start.

SIGTERM (``scancel``, a preempting scheduler) ends the run with exit status 143 after the last completed epoch's
checkpoint is on disk; on SLURM, Lightning's ``SLURMEnvironment(auto_requeue=True)`` saves and requeues on the
timeout signal (SIGUSR1 by default), and the requeued job resumes from the same folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from prograd_pl.errors import disk_error

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


class SyncEpochMetrics(Callback):
    """Compute the epoch's logged metrics on every rank before a progress bar reads them on rank 0 alone.

    A metric logged with ``sync_dist=True`` is synchronised (an all-gather) when it is first computed; a progress
    bar (rich, tqdm, lines) reads the metrics at epoch end on rank 0 only, so rank 0 entered a collective that no
    other rank joined and the run hung after "All distributed processes registered". Reading them here, first and
    on every rank, makes that collective a matched one; the bar then reads the cached values.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1:
            _ = trainer.progress_bar_metrics


class Escalation(Callback):
    """A run that cannot reach its next save point still ends: after the first SIGTERM/SIGINT (Lightning then stops
    at the next epoch boundary), a second one, or ``grace_s`` seconds without reaching it, ends the process at once
    with 143/130. The last complete ``last.ckpt`` resumes the run (a hung collective, a stuck data loader).

    Installed at ``on_train_start``, after Lightning's own handlers, which it calls on the first signal. Python runs
    its signal handlers only in the main thread and only between bytecodes, never while that thread is blocked in C
    code that does not return (a collective, a lock, a driver call); so the signals are counted by a watcher thread
    that reads the interpreter's wakeup fd, which the C-level handler writes at once (:meth:`_watch`).
    """

    def __init__(self, grace_s: float | None = 600.0) -> None:
        self.grace_s = grace_s
        self._count = 0
        self._lock = threading.Lock()
        self._watching = False
        self._write_fd: int | None = None
        self._previous_fd = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig, code in ((signal.SIGTERM, SIGTERM_EXIT), (signal.SIGINT, SIGINT_EXIT)):
            signal.signal(sig, self._handler(signal.getsignal(sig), code))
        self._watch()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop_watching()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._count == 0:  # an error, not a signal: nothing to escalate (after a signal the grace still counts)
            self._stop_watching()

    def _stop_watching(self) -> None:
        if not self._watching or threading.current_thread() is not threading.main_thread():
            return
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(self._previous_fd)
        _WATCH_FDS.discard(self._write_fd)
        with contextlib.suppress(OSError):
            os.close(self._write_fd)  # the watcher reads the end of its pipe and returns
        self._watching = False

    def _watch(self) -> None:
        """Count the signals in a daemon thread reading the wakeup fd (the previous wakeup fd, if any, still gets
        every byte); when it cannot be set, the Python handler counts them."""
        global _FORK_HOOKED
        if not _FORK_HOOKED:  # a forked loader worker must not write its own signals into this process's pipe
            os.register_at_fork(after_in_child=_no_wakeup_fd)
            _FORK_HOOKED = True
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        try:
            self._previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        except (ValueError, OSError):
            os.close(read_fd)
            os.close(write_fd)
            return
        self._write_fd, self._watching = write_fd, True
        _WATCH_FDS.add(write_fd)
        threading.Thread(target=self._read, args=(read_fd,), name="prograd_pl-signals", daemon=True).start()

    def _read(self, read_fd: int) -> None:
        codes = {int(signal.SIGTERM): SIGTERM_EXIT, int(signal.SIGINT): SIGINT_EXIT}
        with contextlib.closing(os.fdopen(read_fd, "rb", buffering=0)) as pipe:
            while data := pipe.read(64):
                if self._previous_fd >= 0:
                    with contextlib.suppress(OSError):
                        os.write(self._previous_fd, data)
                for signum in data:
                    if signum in codes:
                        self._signalled(codes[signum])

    def _signalled(self, code: int) -> None:
        """The first signal starts the grace period, the second ends the process."""
        with self._lock:
            self._count += 1
            first = self._count == 1
        if not first:
            _end_now(code, "a second signal")
        if self.grace_s is not None:
            timer = threading.Timer(float(self.grace_s), _end_now, args=(code, f"{self.grace_s:g} s of grace"))
            timer.daemon = True
            timer.start()

    def _handler(self, previous: Any, code: int) -> Any:
        def handle(signum: int, frame: Any) -> None:
            if not self._watching:
                self._signalled(code)
            if callable(previous):
                previous(signum, frame)
            elif signum == signal.SIGINT:
                raise KeyboardInterrupt

        return handle


_FORK_HOOKED = False
_WATCH_FDS: set[int] = set()
"""The write ends of the watchers' pipes (a forked child lets go of the one it inherits)."""


def _no_wakeup_fd() -> None:
    """In a forked child (a data-loader worker, which also gets the terminal's Ctrl-C): no inherited watcher's
    wakeup fd, so that its signals are not counted by the parent's watcher."""
    with contextlib.suppress(ValueError, OSError):
        previous = signal.set_wakeup_fd(-1)
        if previous not in _WATCH_FDS:  # not ours: leave it as it was
            signal.set_wakeup_fd(previous)


def _end_now(code: int, why: str) -> None:
    """Leave at once (no epoch boundary to wait for): the last complete ``last.ckpt`` resumes the run."""
    sys.stderr.write(f"prograd_pl: stopped after {why} without reaching a save point (exit {code}); the last "
                     "complete last.ckpt resumes the run\n")  # fmt: skip
    sys.stderr.flush()
    os._exit(code)


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_atomically(trainer: L.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` to a temporary name beside ``path``, then rename (every rank must call it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    except Exception as err:  # a full or read-only disk: the previous last.ckpt stays, no temporary is left
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise (disk_error(err, path) or err) from err
    trainer.strategy.barrier("prograd_pl_last_ckpt")


def resume_problem(path: Path, module: L.LightningModule, n_generators: int) -> str | None:
    """Why the checkpoint ``path`` cannot resume this run (it does not load, is not a Lightning checkpoint of this
    module's learned tensors, or carries another number of loader states), None when it can."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, empty, not a zip, a crafted pickle: all the same
        return f"it does not load ({type(err).__name__})"
    if not isinstance(blob, dict):
        return "it is not a Lightning checkpoint"
    missing = [k for k in ("state_dict", "optimizer_states", "loops", "epoch", "global_step") if k not in blob]
    if missing:
        return f"it is not a Lightning checkpoint (no '{missing[0]}')"
    learned = {name: p for name, p in module.named_parameters() if p.requires_grad}
    state = blob["state_dict"]
    if not isinstance(state, dict) or set(state) != set(learned):
        return "it holds other tensors than this run learns"
    for name, p in learned.items():
        value = state[name]
        if not isinstance(value, torch.Tensor) or value.shape != p.shape:
            return f"its {name} has another shape than this run's"
        if not bool(torch.isfinite(value).all()):
            return f"its {name} is not finite"
    states = [v for k, v in (blob.get("callbacks") or {}).items() if str(k).startswith(ResumeState.__name__)]
    if states and (not isinstance(states[0], dict) or len(states[0].get("generators") or []) != n_generators):
        return "its random states belong to another loader"
    return None


def set_aside(path: Path, reason: str) -> Path:
    """Move a checkpoint that cannot resume to ``<name>.corrupt-<time>`` (kept for a look, never read again)."""
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, target)
    log.warning("%s cannot resume the run (%s); moved to %s, training from the start", path, reason, target.name)
    return target


def fit(trainer: L.Trainer, module: L.LightningModule, loader: Any, run_dir: Path,
        every_n_epochs: int = 1, enabled: bool = True, start_over: bool = False,
        grace_s: float | None = 600.0) -> int:  # fmt: skip
    """``trainer.fit`` that writes ``<run_dir>/last.ckpt`` while training and resumes from it when it exists.

    Returns the number of epochs the run resumed after (0 for a fresh start). SIGTERM ends the process with
    status 143 once the last completed epoch's state is on disk. ``start_over`` (``redo=true``) ignores and
    replaces an existing ``last.ckpt``. A second SIGTERM/SIGINT, or ``grace_s`` seconds after the first, ends a run
    that cannot reach its next save point (:class:`Escalation`).
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
        generators = loader_generators(loader)
        trainer.callbacks.append(ResumeState(last, every_n_epochs, generators))
        found = []
        for path in (last, *Path(run_dir).glob("hpc_ckpt_*.ckpt")):
            problem = resume_problem(path, module, len(generators)) if path.is_file() else "absent"
            if problem is None:
                found.append(path)
            elif problem != "absent" and trainer.is_global_zero:
                with contextlib.suppress(FileNotFoundError):
                    set_aside(path, problem)
        trainer.strategy.barrier("prograd_pl_set_aside")
        if found:
            newest = max(found, key=lambda p: p.stat().st_mtime_ns)
            ckpt_path = str(newest)
            log.info("resuming from %s", newest)
    trainer.callbacks.append(Escalation(grace_s))
    trainer.callbacks.insert(0, SyncEpochMetrics())  # before any progress bar's on_train_epoch_end
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
