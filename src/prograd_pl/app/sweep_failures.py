"""A sweep goes on when one of its jobs fails, then says which failed and exits non-zero.

A failed job leaves ``FAILED`` (its one-sentence reason and overrides) in its Hydra job folder; at the end of the
multirun, this Hydra callback lists them and exits with status 1. It works for every launcher whose jobs share the
sweep folder (basic, joblib, submitit).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

MARKER = "FAILED"


TRACEBACK = "traceback.txt"


def record_failure(job_dir: str | Path, reason: str | BaseException, overrides: list[str]) -> str:
    """Leave the reason of a failed job in its Hydra output folder (the sweep's folder, never the run's) and return
    it as one line. An exception that is not a user error is named by its type and first line; its traceback goes
    to ``traceback.txt`` beside the marker."""
    path = Path(job_dir) / MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(reason, BaseException):
        err = reason
        first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "")
        reason = f"{type(err).__name__}: {first}" if first else type(err).__name__
        trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        (path.parent / TRACEBACK).write_text(trace, encoding="utf-8")
        reason += f" (traceback in {path.parent / TRACEBACK})"
    reason = " ".join(str(reason).split())
    path.write_text(f"{reason}\n{' '.join(overrides)}\n", encoding="utf-8")
    return reason


class ReportFailedJobs(Callback):
    """``on_multirun_end``: name the failed jobs and exit 1 when there are any."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = sorted(sweep_dir.glob(f"*/{MARKER}"), key=lambda p: (len(p.parent.name), p.parent.name))
        if not failed:
            return
        jobs = sum(1 for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
        others = max(jobs - len(failed), 0)
        ran = f"the {others} other(s) ran" if others else "none ran"
        print(f"prograd_pl: {len(failed)} job(s) of the sweep failed ({ran}; rerun to retry only these):",
              file=sys.stderr)  # fmt: skip
        for marker in failed:
            reason, _, overrides = marker.read_text(encoding="utf-8").partition("\n")
            print(f"  job {marker.parent.name} ({overrides.strip()}): {reason}", file=sys.stderr)
        sys.exit(1)
