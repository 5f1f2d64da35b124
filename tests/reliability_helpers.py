"""Callbacks the reliability tests load into real runs (``+callbacks.<name>._target_=reliability_helpers...``)."""

from __future__ import annotations

import os
import signal
import time

import lightning as L
from lightning.pytorch.callbacks import Callback


class HangAfterSignal(Callback):
    """Send ``signal`` to the own process after global step ``step``, then never return (a run stuck before its
    next save point, as in a hung collective); ``again`` sends it a second time after one second."""

    def __init__(self, step: int, signal_name: str = "SIGTERM", again: bool = False) -> None:
        self.step, self.signum, self.again = int(step), getattr(signal, signal_name), bool(again)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step:
            return
        os.kill(os.getpid(), self.signum)
        start = time.monotonic()
        while True:
            time.sleep(0.05)
            if self.again and time.monotonic() - start > 1.0:
                os.kill(os.getpid(), self.signum)
                self.again = False
