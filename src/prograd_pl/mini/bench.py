"""``make bench-mini``: base-to-new on every mini task for zero-shot, CoOp, KD and ProGrad (3 seeds).

Prints base / new / H per task and averaged, as the paper's base-to-new table (H of the averages).
"""

from __future__ import annotations

import argparse
import sys
import time

from prograd_pl.mini.runs import common_overrides, run_grid
from prograd_pl.results.aggregate import build_tables
from prograd_pl.results.report import render_markdown
from prograd_pl.results.store import iter_results

TASKS = ("mini_shapes", "mini_colors", "mini_textures", "mini_digits", "mini_scenes")
METHODS = ("zeroshot", "coop", "kd", "prograd")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prograd_pl.mini.bench", description=__doc__)
    p.add_argument("--data-root", default="data")
    p.add_argument("--output-root", default="outputs/bench-mini")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--shots", type=int, default=4)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe for --shots")
    p.add_argument("--model", default="mini")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    grid = [
        [f"dataset={t}", f"method={m}", f"seed={s}"]
        for t in args.tasks.split(",")
        for m in methods
        for s in (seeds[:1] if m == "zeroshot" else seeds)
    ]
    common = [*common_overrides(args.data_root, args.output_root, args.epochs), f"model={args.model}",
              "setting=base2new", f"shots={args.shots}"]  # fmt: skip
    start = time.time()
    run_grid(grid, common)
    records = [rec for _, rec in iter_results(args.output_root)]
    print()
    print(render_markdown(build_tables(records, "base2new", expected_seeds=seeds)))
    print(f"bench-mini: {len(grid)} runs in {time.time() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
