"""Callbacks the third round of reliability tests loads into real runs
(``+callbacks.<name>._target_=reliability3_helpers...``)."""

from __future__ import annotations

import ctypes
import os
import signal
import threading

import lightning as L
from lightning.pytorch.callbacks import Callback


def hang_in_c() -> None:
    """Block the calling thread inside C code that never returns to the interpreter: a second lock of a pthread
    mutex it holds. A signal runs the interpreter's C-level handler and the futex wait resumes, so no Python signal
    handler ever runs in this thread (as in a collective or a driver call that hangs)."""
    libc = ctypes.CDLL(None, use_errno=True)
    mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER, a normal (non-recursive) mutex
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)  # ctypes releases the GIL: other threads run, this one never returns
    raise AssertionError("a relocked pthread mutex returned")


class HangInCAfterSignal(Callback):
    """After global step ``step``, hang the training loop inside C code (:func:`hang_in_c`); ``delay_s`` later a
    thread sends ``signal_name`` to the process, with ``again`` a second one a second after that: the signals
    arrive while the main thread is stuck where Python's signal handlers cannot run."""

    def __init__(self, step: int, signal_name: str = "SIGTERM", again: bool = False, delay_s: float = 0.5) -> None:
        self.step, self.signum = int(step), getattr(signal, signal_name)
        self.again, self.delay_s = bool(again), float(delay_s)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step:
            return
        pid = os.getpid()
        delays = [self.delay_s, self.delay_s + 1.0] if self.again else [self.delay_s]
        for delay in delays:
            timer = threading.Timer(delay, os.kill, args=(pid, self.signum))
            timer.daemon = True
            timer.start()
        hang_in_c()
