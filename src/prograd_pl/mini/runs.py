"""Run grids of configurations in-process (the mini-world demo and benchmark) and summarise them."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterable, Sequence

from prograd_pl.__main__ import CONF_DIR


def compose_config(overrides: Sequence[str]):
    """The project's Hydra config with ``overrides``, exactly as the command line would compose it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run_grid(grid: Iterable[Sequence[str]], common: Sequence[str], quiet: bool = True) -> list[dict]:
    """Run every override list of ``grid`` (plus ``common``); finished runs are read back, not rerun."""
    from prograd_pl.run import run

    if quiet:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric", "root", "prograd_pl"):
            logging.getLogger(name).setLevel(logging.WARNING)
    records = []
    grid = list(grid)
    for i, overrides in enumerate(grid, 1):
        overrides = [*common, *overrides]
        start = time.time()
        res = run(compose_config(overrides), overrides)
        print(f"[{i}/{len(grid)}] {' '.join(o for o in overrides if not o.startswith(tuple(_QUIET)))}: "
              f"acc {res['metrics']['acc']:.2f}% ({time.time() - start:.1f}s)", flush=True)  # fmt: skip
        records.append(res)
    return records


_QUIET = ("data_root=", "output_root=", "cache_root=", "logger=", "trainer.progress_bar=", "trainer.num_workers=",
          "trainer.threads=")


def common_overrides(data_root: str | Path, output_root: str | Path, epochs: int | None) -> list[str]:
    out = [f"data_root={data_root}", f"output_root={output_root}", "logger=csv", "trainer.progress_bar=none",
           "trainer.num_workers=0", "trainer.threads=1"]  # fmt: skip
    if epochs is not None:
        out.append(f"trainer.max_epochs={epochs}")
    return out
