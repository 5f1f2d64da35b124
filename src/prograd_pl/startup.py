"""Loading the C-extension libraries with Ctrl-C held back.

torch's import runs C++ that calls back into Python (operator registration, custom ops, code run through
``PyRun``). A SIGINT whose KeyboardInterrupt is raised inside such a callback either aborts the process
("terminate called after throwing an instance of 'pybind11::error_already_set'") or marks the interpreter so
that it kills itself with SIGINT at exit, even though the entry point caught the interrupt. So while these
libraries load, SIGINT's handler only records the signal; the interrupt is raised the moment the imports end,
in plain Python, where the entry point turns it into "interrupted" and exit 130. (Blocking the signal with
``pthread_sigmask`` is not enough: threads that numpy's BLAS started earlier still take it, and Python runs
the handler in the main thread wherever it happens to be.)
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

HEAVY_MODULES = ("torch", "torchvision", "open_clip", "torchmetrics", "lightning")


@contextmanager
def sigint_held() -> Iterator[None]:
    """Record SIGINT instead of raising during the block; a recorded one goes to the previous handler after it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; signals are handled there anyway
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt here
    elif caught and previous == signal.SIG_DFL:
        raise KeyboardInterrupt


def import_heavy() -> None:
    """Import torch, torchvision, open_clip, torchmetrics and Lightning, SIGINT held while any of them loads."""
    missing = [name for name in HEAVY_MODULES if name not in sys.modules]
    if not missing:
        return
    with sigint_held():
        for name in missing:
            importlib.import_module(name)
