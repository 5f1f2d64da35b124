"""`make table-*` path: sweep driver -> Hydra multirun -> results -> report tables and plot."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from prograd_pl.results.aggregate import mean_std


@pytest.mark.parametrize("setting", [pytest.param("fewshot", marks=pytest.mark.slow), "base2new"])  # same path; 34 s
def test_sweep_then_report_on_the_mini_world(tmp_path, setting):
    out = tmp_path / "out"
    grid = ["shots=1,2", "seed=1,2"] if setting == "fewshot" else ["seed=1,2", "--methods", "coop,cocoop,prograd"]
    cmd = [sys.executable, "-m", "prograd_pl.sweep", setting, "--model", "mini", "--data-root", str(tmp_path / "data"),
           "--output-root", str(out), "model=tiny", "dataset=mini_shapes", *grid, "trainer.max_epochs=1",
           "threads=1", "progress_bar=none", "logger=none"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "tables" / f"{setting}.md").read_text()
    assert "mini_shapes" in md and "prograd" in md.lower() and "coop" in md.lower()
    assert (out / "tables" / f"{setting}.csv").is_file() and (out / "tables" / f"{setting}.tex").is_file()
    records = [json.loads(p.read_text()) for p in out.rglob("results.json")]
    if setting == "fewshot":
        assert (out / "tables" / "fewshot_curves.png").stat().st_size > 1000
        # 2 shots x 2 seeds x 3 methods (coop, linear_probe, prograd) + one zero-shot run
        assert len(records) == 13 and {r["method"] for r in records} == {"coop", "linear_probe", "prograd", "zeroshot"}
        accs = [r["metrics"]["acc"] for r in records if r["method"] == "prograd" and r["shots"] == 2]
        mean, std = mean_std(accs)
        with open(out / "tables" / "fewshot.csv") as fh:
            rows = list(csv.DictReader(fh))
        cells = [r for r in rows if "prograd" in json.dumps(r).lower() and "mini_shapes" in json.dumps(r)
                 and r.get("shots", r.get("column")) in ("2", "2 shots")]  # fmt: skip
        assert cells and any(abs(float(c["mean"]) - mean) < 1e-6 and abs(float(c["std"]) - std) < 1e-6 for c in cells)
    else:
        subs = sorted((r["method"], r["subsample"]) for r in records)
        assert subs.count(("prograd", "new")) == 2 and subs.count(("zeroshot", "base")) == 1
        assert subs.count(("cocoop", "new")) == 2 and "cocoop" in md
        assert "H" in md


def test_sweep_names_the_override_to_use_instead_of_a_sweeper_param_list(capsys):
    from prograd_pl.sweep import main

    with pytest.raises(SystemExit) as exit_info:
        main(["base2new", "--model", "mini", "--dry-run", "hydra.sweeper.params.seed=4,5,6"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "hydra.sweeper.params.seed=4,5,6: Hydra does not sweep over its own config keys; pass seed=4,5,6" in err
    assert main(["base2new", "--model", "mini", "--dry-run", "seed=4,5,6"]) == 0  # the form it names works
    assert main(["base2new", "--model", "mini", "--dry-run", "hydra.sweeper.params.seed=2"]) == 0  # one value is fine
