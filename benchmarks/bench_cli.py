"""Time to the first answer of the command line: ``--help`` and a bad option (``method.lam=abc``).

Both must answer in under 2 s: the entry point imports Hydra and the app lazily, and the options are checked before
torch and open_clip are imported (``import open_clip`` alone takes ~4.5 s on 2 cores). Prints one line per case
(the median of ``--reps`` fresh processes); a benchmark, not a timed test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "--help": ["--help"],
    "bad option (method.lam=abc)": ["method.lam=abc"],
    "bad type (shots=four)": ["shots=four"],
}


def time_case(args: list[str], reps: int, cwd: str) -> tuple[float, int, str]:
    """Median wall seconds of ``python -m prograd_pl <args>`` over ``reps`` processes, its exit status, last line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    times, rc, last = [], 0, ""
    for _ in range(reps):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "prograd_pl", *args, f"output_root={cwd}/out"]
                              if args[0] != "--help" else [sys.executable, "-m", "prograd_pl", *args],
                              cwd=cwd, env=env, capture_output=True, text=True, check=False)  # fmt: skip
        times.append(time.perf_counter() - start)
        rc = proc.returncode
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        last = lines[-1] if lines else ""
    return statistics.median(times), rc, last


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            seconds, rc, last = time_case(case, args.reps, tmp)
            verdict = "ok" if seconds < 2.0 else "SLOW (> 2 s)"
            print(f"time to first answer, {name}: {seconds:.2f} s (median of {args.reps}, exit {rc}) {verdict}"
                  f"{'' if name == '--help' else ': ' + last}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
