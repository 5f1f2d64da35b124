"""``make demo``: zero-shot vs CoOp vs ProGrad on a mini task, 3 seeds, offline; prints a table.

Trained on the base half of the classes with a few shots, tested on base and on the unseen new classes: prompt
tuning gains on base and forgets on new (the paper's failure), and ProGrad is meant to keep more of zero-shot's
new-class accuracy.
"""

from __future__ import annotations

import argparse
import sys

from prograd_pl.mini.runs import common_overrides, run_grid
from prograd_pl.results.aggregate import harmonic_mean, mean_std
from prograd_pl.results.store import iter_results

METHODS = ("zeroshot", "coop", "prograd")


def summarise(output_root: str, dataset: str, methods: tuple[str, ...] = METHODS) -> str:
    """Markdown table: per method mean ± std (population) of base and new accuracy over seeds, and H."""
    acc: dict[tuple[str, str], dict[int, float]] = {}
    for _, rec in iter_results(output_root):
        if rec["setting"] == "base2new" and rec["dataset"] == dataset:
            acc.setdefault((rec["method"], rec["subsample"]), {})[rec["seed"]] = rec["metrics"]["acc"]
    lines = [f"Base-to-new on {dataset} (mean ± std over seeds)", "",
             "| method | base | new | H |", "|---|---|---|---|"]  # fmt: skip
    for m in methods:
        b, n = acc.get((m, "base"), {}), acc.get((m, "new"), {})
        if not b or not n:
            lines.append(f"| {m} | – | – | – |")
            continue
        (bm, bs), (nm, ns) = mean_std(list(b.values())), mean_std(list(n.values()))
        lines.append(f"| {m} | {bm:.2f} ± {bs:.2f} | {nm:.2f} ± {ns:.2f} | {harmonic_mean(bm, nm):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prograd_pl.mini.demo", description=__doc__)
    p.add_argument("--data-root", default="data")
    p.add_argument("--output-root", default="outputs/demo")
    p.add_argument("--dataset", default="mini_shapes")
    p.add_argument("--shots", type=int, default=4)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe for --shots")
    p.add_argument("--model", default="mini")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    grid = [[f"method={m}", f"seed={s}"] for m in METHODS for s in (seeds[:1] if m == "zeroshot" else seeds)]
    common = [*common_overrides(args.data_root, args.output_root, args.epochs), f"model={args.model}",
              f"dataset={args.dataset}", "setting=base2new", f"shots={args.shots}"]  # fmt: skip
    run_grid(grid, common)
    print()
    print(summarise(args.output_root, args.dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
