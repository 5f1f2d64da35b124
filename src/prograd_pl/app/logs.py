"""What a run prints: one console stream (Hydra's job logging, ``conf/hydra/job_logging/prograd.yaml``) with each
record once, and a copy of everything the run logs in ``<run_dir>/log.txt``.

Records logged before the run's folder is known (data generation, the resolved config) are held in memory and
written first when :func:`attach_run_log` names the folder. A record with ``extra={"console": False}`` goes to the
log file only (the per-epoch lines while a rich progress bar draws on a terminal).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

LOG_FILE = "log.txt"
FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"

log = logging.getLogger("prograd_pl")


def _console_record(record: logging.LogRecord) -> bool:
    """Console filter: drop file-only records, open_clip's INFO chatter and Lightning's cloud tips."""
    if getattr(record, "console", True) is False:
        return False
    if record.levelno < logging.WARNING and "open_clip" in record.pathname:
        return False
    return not (record.name.startswith("lightning") and "Tip:" in record.getMessage())


def drop_lightning_handlers() -> None:
    """Lightning's records go to the root's handlers only. ``import lightning`` always adds a StreamHandler of its
    own (stderr) to the ``lightning`` logger, and ``lightning.pytorch``/``lightning.fabric`` add one when imported
    before logging is configured, so each line came out twice. Called again once Lightning is surely imported
    (:func:`prograd_pl.app.components.build_callbacks`); nothing is dropped while the root logger has no handler."""
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


def setup_console() -> None:
    """One stream (see :func:`drop_lightning_handlers`); the console drops file-only records and open_clip's INFO
    chatter; Python warnings become log records, so they reach ``log.txt`` too."""
    drop_lightning_handlers()
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, RunLog) and _console_record not in handler.filters:
            handler.addFilter(_console_record)
    logging.captureWarnings(True)


class RunLog(logging.Handler):
    """Holds the records of a run until its folder is known, then appends them and every later one to
    ``<run_dir>/log.txt`` (a resumed run appends to the same file)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter(FORMAT))
        self.addFilter(lambda r: r.levelno >= logging.WARNING or "open_clip" not in r.pathname)
        self._held: list[str] = []
        self._file: Any = None
        self.path: Path | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001  (logging must never end a run)
            self.handleError(record)
            return
        if self._file is None:
            self._held.append(text)
        else:
            self._file.write(text + "\n")
            self._file.flush()

    def open(self, path: Path) -> None:
        """Start writing to ``path``: the held records first."""
        if self._file is not None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115  (closed by close())
        self.path = path
        for text in self._held:
            self._file.write(text + "\n")
        self._held.clear()
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


_active: RunLog | None = None


@contextmanager
def capture_run_log() -> Iterator[RunLog]:
    """Collect everything logged inside the block for the run's ``log.txt`` (see :func:`attach_run_log`)."""
    global _active
    handler = RunLog()
    root = logging.getLogger()
    root.addHandler(handler)
    previous, _active = _active, handler
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        handler.close()
        _active = previous


def attach_run_log(run_dir: Path) -> None:
    """The run's folder is known: its ``log.txt`` receives what was held and what follows (rank 0 only; nothing
    outside :func:`capture_run_log`)."""
    if (
        _active is not None
        and os.environ.get("LOCAL_RANK", "0") == "0"
        and os.environ.get("NODE_RANK", "0") == "0"
    ):
        _active.open(Path(run_dir) / LOG_FILE)


def config_lines(config: Mapping[str, Any]) -> list[str]:
    """The resolved config as dotted ``key: value`` lines (``_target_``/``_partial_`` left out)."""
    from prograd_pl.results.diff import flatten

    flat = flatten(config)
    return [f"{k}: {v}" for k, v in flat.items() if not k.endswith(("_target_", "_partial_"))]


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except ImportError:
        return False


def print_config(config: Mapping[str, Any]) -> None:
    """Log the resolved config (recipe values included), one dotted ``key: value`` per line. A job of a sweep
    writes it to its ``log.txt`` only: sixty lines per job would bury the sweep's own lines."""
    text = "\n".join(f"  {line}" for line in config_lines(config))
    log.info("resolved config:\n%s", text, extra={"console": not in_multirun()})
