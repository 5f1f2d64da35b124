"""Run a paper table's sweep (a Hydra multirun over an ``experiment/`` config) and rebuild its tables.

``python -m prograd_pl.sweep fewshot --model rn50`` = the zero-shot runs + ``-m experiment=fewshot`` + ``report``.
The mini world's demo and benchmark are experiments on the same path (``--experiment mini_demo``). Finished runs
are skipped, so rerunning after an interruption only does what is missing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from prograd_pl.paper import SETTINGS

LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=local_parallel"], "slurm": ["hydra/launcher=slurm"]}
MODELS = ("rn50", "vit_b16", "mini")


def experiment_name(setting: str, model: str) -> str:
    """``experiment/<name>.yaml`` of a table: ``fewshot``, ``fewshot_vit_b16``, ``mini_fewshot`` ..."""
    if model == "mini":
        return f"mini_{setting}"
    return setting if model == "rn50" else f"{setting}_{model}"


def build_commands(args: argparse.Namespace) -> list[list[str]]:
    """The zero-shot multirun (one seed, shots irrelevant) and the experiment's own multirun."""
    exp = args.experiment or experiment_name(args.setting, args.model)
    common = [f"data_root={args.data_root}", f"output_root={args.output_root}", *LAUNCHERS[args.launcher]]
    head = [sys.executable, "-m", "prograd_pl", "-m", f"experiment={exp}", *common]
    user = list(args.overrides)
    cmds = []
    if not args.no_zeroshot:
        pinned = ("method=", "seed=", "shots=")  # zero-shot: no training, one deterministic run per dataset
        cmds.append([*head, *[o for o in user if not o.startswith(pinned)], "method=zeroshot", "seed=1", "shots=1"])
    grid = [*head, *user]
    if args.methods and not any(o.startswith("method=") for o in user):
        grid.append(f"method={args.methods}")
    cmds.append(grid)
    return cmds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prograd_pl.sweep", description=__doc__)
    p.add_argument("setting", choices=SETTINGS)
    p.add_argument("--model", default="rn50", choices=MODELS, help="selects experiment/<setting>[_model]")
    p.add_argument("--experiment", default=None, help="run this experiment config instead (e.g. mini_demo)")
    p.add_argument("--data-root", default="data")
    p.add_argument("--output-root", default="outputs")
    p.add_argument("--launcher", default="basic", choices=sorted(LAUNCHERS))
    p.add_argument("--methods", default=None, help="comma list overriding the experiment's methods")
    p.add_argument("--no-zeroshot", action="store_true")
    p.add_argument("--summary", default=None, metavar="DATASET",
                   help="also print the base-to-new summary of DATASET with what to read in it (the demo)")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    args = p.parse_intermixed_args(argv)
    for o in args.overrides:
        key, _, value = o.partition("=")
        if key.startswith("hydra.sweeper.params.") and "," in value:
            name = key.removeprefix("hydra.sweeper.params.")
            p.error(f"{o}: Hydra does not sweep over its own config keys; pass {name}={value} instead (it replaces "
                    f"the experiment's list of {name})")
    for cmd in build_commands(args):
        print("+", " ".join(cmd), flush=True)
        if not args.dry_run:
            rc = subprocess.call(cmd)
            if rc != 0:
                print(f"sweep: a job failed (exit {rc}); finished runs are kept, rerun to resume.", file=sys.stderr)
                return rc
    if args.dry_run:
        return 0
    from prograd_pl.results.report import main as report_main
    from prograd_pl.results.report import print_base2new_summary

    tables = Path(args.output_root) / "tables"
    report_args = [str(args.output_root), "--setting", args.setting, "--out", str(tables)]
    reference = Path("experiments") / args.setting / "reference.csv"
    if reference.is_file() and args.model != "mini":  # the mini world has no published numbers
        report_args += ["--reference", str(reference)]
    rc = report_main(report_args)
    if args.summary:
        print()
        print_base2new_summary(args.output_root, args.summary)
    return rc


if __name__ == "__main__":
    sys.exit(main())
