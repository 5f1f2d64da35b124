"""Run a paper table's sweep (Hydra multirun over an ``experiment/`` config) and rebuild its tables.

``python -m prograd_pl.sweep fewshot --model rn50`` = zero-shot runs + ``-m experiment=fewshot`` + ``report``.
Finished runs are skipped, so rerunning after an interruption only does what is missing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

SETTINGS = ("fewshot", "base2new", "dg", "xd")
LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=local_parallel"], "slurm": ["hydra/launcher=slurm"]}
ZS_DATASETS = {
    "fewshot": "caltech101,oxford_pets,stanford_cars,oxford_flowers,food101,fgvc_aircraft,sun397,dtd,eurosat,"
    "ucf101,imagenet",
}
MINI_TASKS = "mini_shapes,mini_colors,mini_textures,mini_digits,mini_scenes"


def experiment_name(setting: str, model: str) -> str:
    if model == "mini":
        return f"mini_{setting}"
    return setting if model == "rn50" else f"{setting}_{model}"


def zeroshot_overrides(setting: str, model: str) -> list[str]:
    """One zero-shot job per dataset of the table (zero-shot needs no seeds or shots)."""
    datasets = MINI_TASKS if model == "mini" else ZS_DATASETS["fewshot"]
    if setting in ("dg", "xd"):
        return ["method=zeroshot", "seed=1"]  # the experiment fixes the source dataset and the targets
    return ["method=zeroshot", "seed=1", f"dataset={datasets}"]


def build_commands(args: argparse.Namespace) -> list[list[str]]:
    exp = experiment_name(args.setting, args.model)
    common = [f"data_root={args.data_root}", f"output_root={args.output_root}", *LAUNCHERS[args.launcher]]
    head = [sys.executable, "-m", "prograd_pl", "-m", f"experiment={exp}", *common]
    base = [*head, *args.overrides]
    cmds = []
    if not args.no_zeroshot:
        zs_user = [o for o in args.overrides if not o.startswith(("method=", "seed="))]  # zero-shot: one seed
        # the experiment's sweeper params would sweep methods/seeds again; pin them on the command line
        given = {o.split("=", 1)[0] for o in zs_user}
        zs = [o for o in zeroshot_overrides(args.setting, args.model) if o.split("=", 1)[0] not in given]
        cmds.append([*head, *zs_user, *[o for o in zs if not o.startswith("method=")], "method=zeroshot"])
    methods = args.methods or None
    if methods and not any(o.startswith("method=") for o in args.overrides):
        base = [*base, f"method={methods}"]
    cmds.append(base)
    return cmds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prograd_pl.sweep", description=__doc__)
    p.add_argument("setting", choices=SETTINGS)
    p.add_argument("--model", default="rn50", help="rn50 | vit_b16 | mini (selects experiment/<setting>[_model])")
    p.add_argument("--data-root", default="data")
    p.add_argument("--output-root", default="outputs")
    p.add_argument("--launcher", default="basic", choices=sorted(LAUNCHERS))
    p.add_argument("--methods", default=None, help="comma list overriding the experiment's methods")
    p.add_argument("--no-zeroshot", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    args = p.parse_intermixed_args(argv)
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

    tables = Path(args.output_root) / "tables"
    return report_main([str(args.output_root), "--setting", args.setting, "--out", str(tables)])


if __name__ == "__main__":
    sys.exit(main())
