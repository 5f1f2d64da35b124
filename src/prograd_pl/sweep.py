"""Run a paper table's sweep (a Hydra multirun over an ``experiment/`` config) and rebuild its tables.

``python -m prograd_pl.sweep fewshot --model rn50`` = the zero-shot runs + ``-m experiment=fewshot`` + ``report``.
The mini world's demo and benchmark are experiments on the same path (``--experiment mini_demo``). Finished runs
are skipped, so rerunning after an interruption only does what is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from prograd_pl.paper import SETTINGS

LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=local_parallel"], "slurm": ["hydra/launcher=slurm"]}
MODELS = ("rn50", "vit_b16", "mini", "mini_vit")


STATUS_FILE = "STATUS.json"
FAILED_MARKER = "FAILED"  # left by prograd_pl.app.sweep_failures.record_failure


def job_status(result: Any, job_dir: Path) -> str:
    """``ran``, ``skipped`` (a finished run read back) or ``failed`` (a failure marker, or no result)."""
    if (job_dir / FAILED_MARKER).is_file() or not isinstance(result, dict):
        return "failed"
    return "skipped" if result.get("skipped") else "ran"


def job_weights(result: Any, config: DictConfig) -> str:
    """The backbone and its weights: from the result, else from the job's config (a job that failed)."""
    if isinstance(result, dict) and result.get("backbone"):
        name, pretrained = result.get("backbone"), result.get("pretrained")
    else:
        try:
            name, pretrained = OmegaConf.select(config, "model.name"), OmegaConf.select(config, "model.pretrained")
        except Exception:  # noqa: BLE001  (a config that does not resolve: its failure is named elsewhere)
            return "unknown"
    return f"{name} ({pretrained or 'random weights'})"


def summary_line(statuses: list[dict[str, Any]], n_jobs: int | None = None) -> str:
    """``sweep: 6 jobs: 3 ran, 2 skipped (finished before), 1 failed; weights: prograd-mini (mini:)``."""
    counts = Counter(s.get("status") for s in statuses)
    n_jobs = max(n_jobs or 0, len(statuses))
    parts = [f"{counts['ran']} ran", f"{counts['skipped']} skipped (finished before)", f"{counts['failed']} failed"]
    if n_jobs > len(statuses):
        parts.append(f"{n_jobs - len(statuses)} without a status (killed?)")
    weights = Counter(s.get("weights", "unknown") for s in statuses)
    named = ", ".join(w if len(weights) == 1 else f"{w} x{n}" for w, n in weights.items()) or "none"
    return f"sweep: {n_jobs} job{'s' if n_jobs != 1 else ''}: {', '.join(parts)}; weights: {named}"


class SweepSummary(Callback):
    """Hydra callback: each job leaves ``STATUS.json`` in its Hydra job folder; at the end of the multirun one line
    counts the jobs that ran, were skipped (finished before) and failed, and names the weights they used."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return
        job_dir = Path(hc.runtime.output_dir)
        ok = job_return.status == JobStatus.COMPLETED
        result = job_return.return_value if ok else None
        record = {"status": job_status(result, job_dir), "weights": job_weights(result, config),
                  "run_dir": result.get("run_dir") if isinstance(result, dict) else None}  # fmt: skip
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / STATUS_FILE).write_text(json.dumps(record) + "\n", encoding="utf-8")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        statuses = []
        for path in sorted(sweep_dir.glob(f"*/{STATUS_FILE}")):
            try:
                statuses.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                statuses.append({"status": "failed", "weights": "unknown"})
        n_jobs = sum(1 for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()) if sweep_dir.is_dir() else 0
        print(summary_line(statuses, n_jobs), flush=True)


def experiment_name(setting: str, model: str) -> str:
    """``experiment/<name>.yaml`` of a table: ``fewshot``, ``fewshot_vit_b16``, ``mini_fewshot``,
    ``mini_vit_base2new`` ..."""
    if model.startswith("mini"):
        return f"{model}_{setting}"
    return setting if model == "rn50" else f"{setting}_{model}"


def quoted(value: str) -> str:
    """``value`` as a quoted Hydra override value: a path with ``=``, ``,``, spaces or quotes stays one path (not
    a sweep, not two overrides); backslashes before a quote or at the end are doubled, ``${`` is kept literal."""
    text = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), str(value))
    return "'" + text.replace("${", "\\${") + "'"


def build_commands(args: argparse.Namespace) -> list[list[str]]:
    """The zero-shot multirun (one seed, shots irrelevant) and the experiment's own multirun."""
    exp = args.experiment or experiment_name(args.setting, args.model)
    common = [f"data_root={quoted(args.data_root)}", f"output_root={quoted(args.output_root)}",
              *LAUNCHERS[args.launcher]]  # fmt: skip
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
    from prograd_pl.app.config import group_configs

    exp = args.experiment or experiment_name(args.setting, args.model)
    if exp not in group_configs("experiment"):
        p.error(f"there is no experiment {exp} (conf/experiment/{exp}.yaml) for {args.setting} on --model "
                f"{args.model}; the experiments: {', '.join(group_configs('experiment'))}")
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
    if reference.is_file() and not args.model.startswith("mini"):
        report_args += ["--reference", str(reference)]
    elif reference.is_file():  # the mini world has no published numbers: the papers' averages beside, for the order
        report_args += ["--papers", str(reference)]
    rc = report_main(report_args)
    if args.summary:
        print()
        print_base2new_summary(args.output_root, args.summary)
    return rc


if __name__ == "__main__":
    sys.exit(main())
