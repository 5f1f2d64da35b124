"""Training progress as log lines: one line every ``every_n_steps`` steps and one per epoch (loss, accuracy, learning
rate, it/s, elapsed, ETA), each containing the word ``epoch``.

``progress_bar=auto`` (the default) draws Lightning's rich bar on a terminal and prints these lines otherwise (a log
file, a CI job, a sweep's captured output); on a terminal the per-epoch lines still go to the run's ``log.txt``.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta
from typing import Any

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

log = logging.getLogger("prograd_pl.progress")


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=max(0, round(seconds))))


class EpochLines:
    """The line-writing part, shared by :class:`LineProgressBar` and :class:`RichEpochLines` (a mixin before a
    Lightning ``ProgressBar`` in the bases)."""

    def _setup_lines(self, every_n_steps: int, console: bool) -> None:
        self.every_n_steps = max(0, int(every_n_steps))
        self.console = console
        self._fit_start = self._epoch_start = time.monotonic()
        self._epochs_done = 0

    def _metrics(self, trainer: Any, epoch_end: bool) -> str:
        metrics = trainer.callback_metrics
        parts = []
        for key, label in (("train/loss_ce", "loss"), ("train/acc", "acc")):
            if key in metrics and (epoch_end or key != "train/acc"):
                value = float(metrics[key])  # read at log intervals only
                parts.append(f"{label} {value * 100:.1f}%" if label == "acc" else f"{label} {value:.4f}")
        if trainer.optimizers:
            parts.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.2e}")
        return ", ".join(parts)

    def _emit(self, text: str) -> None:
        log.info(text, extra={"console": self.console})

    def _fit_started(self) -> None:
        self._fit_start = self._epoch_start = time.monotonic()
        self._epochs_done = 0

    def _step_line(self, trainer: Any, batch_idx: int) -> None:
        n = batch_idx + 1
        total = trainer.num_training_batches
        if not self.every_n_steps or n % self.every_n_steps or n >= total:
            return
        elapsed = time.monotonic() - self._epoch_start
        rate = n / elapsed if elapsed > 0 else 0.0
        epochs_left = trainer.max_epochs - trainer.current_epoch - 1
        eta = (total - n) / rate + epochs_left * total / rate if rate else 0.0
        self._emit(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} step {n}/{total}: "
                   f"{self._metrics(trainer, False)}, {rate:.2f} it/s, ETA {_clock(eta)}")  # fmt: skip

    def _epoch_line(self, trainer: Any) -> None:
        now = time.monotonic()
        seconds = now - self._epoch_start
        steps = trainer.num_training_batches
        self._epochs_done += 1
        per_epoch = (now - self._fit_start) / self._epochs_done
        eta = per_epoch * (trainer.max_epochs - trainer.current_epoch - 1)
        rate = steps / seconds if seconds > 0 else 0.0
        self._emit(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {self._metrics(trainer, True)}, "
                   f"{rate:.2f} it/s, {_clock(now - self._fit_start)} elapsed, ETA {_clock(eta)}")  # fmt: skip
        self._epoch_start = time.monotonic()


class LineProgressBar(EpochLines, ProgressBar):
    """A progress "bar" for logs: a line every ``every_n_steps`` training steps (0: none) and one per epoch;
    ``console=False`` writes them to the run's ``log.txt`` only (sweeps of many short runs)."""

    def __init__(self, every_n_steps: int = 50, console: bool = True) -> None:
        super().__init__()
        self._enabled = True
        self._setup_lines(every_n_steps, console=console)

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._fit_started()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._epoch_start = time.monotonic()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._enabled:
            self._step_line(trainer, batch_idx)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._enabled:
            self._epoch_line(trainer)


class RichEpochLines(EpochLines, RichProgressBar):
    """Lightning's rich bar on the terminal; the per-epoch lines go to the run's ``log.txt`` only."""

    def __init__(self, every_n_steps: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._setup_lines(every_n_steps, console=False)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_start(trainer, pl_module)
        self._fit_started()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._epoch_start = time.monotonic()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self.is_disabled:
            self._epoch_line(trainer)


def auto(every_n_steps: int = 50, leave: bool = True) -> ProgressBar:
    """Rich bar on a terminal (epoch lines to ``log.txt``), log lines otherwise."""
    if sys.stdout.isatty():
        return RichEpochLines(leave=leave)
    return LineProgressBar(every_n_steps=every_n_steps)
