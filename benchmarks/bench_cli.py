"""Time to the first answer of the command line: ``--help``, a bad option (``method.lam=abc``), and weights that
are not on this machine with the hub offline.

``--help`` and a bad option must answer in under 2 s: the entry point imports Hydra and the app lazily, and the
options are checked before torch and open_clip are imported (``import open_clip`` alone takes ~4.5 s on 2 cores).
Missing weights are found after those imports (open_clip's registry says which file to look for) and must end in
under 10 s, with no hub retries (the hub client alone used to retry for ~50 s). Prints one line per case (the median
of ``--reps`` fresh processes, wall and CPU seconds); a benchmark, not a timed test.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

MISSING_WEIGHTS = "weights not on this machine (model=rn50, offline)"
CASES = {
    "--help": ["--help"],
    "bad option (method.lam=abc)": ["method.lam=abc"],
    "bad type (shots=four)": ["shots=four"],
    MISSING_WEIGHTS: ["dataset=folder", "dataset.path={tmp}/images", "model=rn50"],
}
GOALS = {MISSING_WEIGHTS: 10.0}  # seconds; the others 2


def image_folder(root: str) -> None:
    """Two classes of three small images: a dataset=folder tree whose check passes, so the weights are looked for."""
    from PIL import Image

    for index, name in enumerate(("cat", "dog")):
        os.makedirs(f"{root}/{name}", exist_ok=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (80 * index, 40 * i, 100)).save(f"{root}/{name}/{i}.png")


def time_case(args: list[str], reps: int, cwd: str) -> tuple[float, float, int, str]:
    """Median wall and CPU seconds of ``python -m prograd_pl <args>`` over ``reps`` processes, its exit status and
    last line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PROGRAD_WEIGHTS": f"{cwd}/no_weights",
           "HF_HOME": f"{cwd}/hf"}  # fmt: skip
    times, cpu, rc, last = [], [], 0, ""
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "prograd_pl", *args, f"output_root={cwd}/out"]
                              if args[0] != "--help" else [sys.executable, "-m", "prograd_pl", *args],
                              cwd=cwd, env=env, capture_output=True, text=True, check=False)  # fmt: skip
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        rc = proc.returncode
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        last = lines[-1] if lines else ""
        if any("retry" in line.lower() for line in lines):
            last = "HUB RETRIES: " + last
    return statistics.median(times), statistics.median(cpu), rc, last


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        image_folder(f"{tmp}/images")
        for name, case in CASES.items():
            seconds, cpu, rc, last = time_case([a.format(tmp=tmp) for a in case], args.reps, tmp)
            goal = GOALS.get(name, 2.0)
            verdict = "ok" if seconds < goal else f"SLOW (> {goal:g} s)"
            print(f"time to first answer, {name}: {seconds:.2f} s, CPU {cpu:.2f} s (median of {args.reps}, exit {rc}) "
                  f"{verdict}{'' if name == '--help' else ': ' + last}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
