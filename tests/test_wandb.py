"""W&B offline: a run logs its resolved config, its sweep's group, one metric per evaluated target (+ H) and the
training curves; ``report --wandb`` uploads the tables to the same group. Read back from the offline run files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, compose, small_overrides
from data_trees import build_tree
from scaleout_helpers import wandb_run_contents, wandb_run_file

from prograd_pl.app.run import run


def test_offline_run_logs_config_group_targets_and_curves_and_report_uploads_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    build_tree("oxford_pets", tmp_path / "data", n_classes=4, per_class=(4, 2, 3))
    res = run(compose(small_overrides(tmp_path, "dataset=oxford_pets", "setting=base2new", "shots=2",
                                      "trainer.max_epochs=2", "threads=1", "logger=wandb_offline")))  # fmt: skip
    got = wandb_run_contents(wandb_run_file(Path(res["run_dir"])))
    assert got["run"].run_group == "base2new-prograd-tiny"
    cfg = got["config"]
    assert cfg["method.name"] == "prograd" and cfg["shots"] == 2 and cfg["dataset.name"] == "oxford_pets"
    assert cfg["trainer.max_epochs"] == 2 and cfg["seed"] == 1 and "method.lam" in cfg
    logged = {k for row in got["history"] for k in row}
    assert {"train/loss_ce", "train/loss_kl", "train/grad_cos", "train/conflict", "train/lr"} <= logged
    assert {"test/base/acc", "test/new/acc", "test/H"} <= logged and "test/acc" not in logged
    summary = got["summary"]
    base = json.loads((Path(res["run_dir"]) / "results.json").read_text())
    new = json.loads(next(Path(res["run_dir"]).rglob("evals/*/results.json")).read_text())
    assert summary["test/base/acc"] == base["metrics"]["acc"] and summary["test/new/acc"] == new["metrics"]["acc"]
    b, n = base["metrics"]["acc"], new["metrics"]["acc"]
    assert abs(summary["test/H"] - (2 * b * n / (b + n) if b + n else 0.0)) < 1e-9

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run([sys.executable, "-m", "prograd_pl", "report", str(tmp_path / "out"), "--no-plot",
                           "--wandb"], capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (report_file,) = (tmp_path / "out" / "tables").glob("wandb/offline-run-*/run-*.wandb")
    rep = wandb_run_contents(report_file)
    assert rep["run"].run_group == "base2new-prograd-tiny" and rep["run"].job_type == "report"
    keys = {k.split("/_", 1)[0].rsplit("/", 1)[0] for row in rep["history"] for k in row if k.startswith("table/")}
    assert "table/base2new" in keys
    (long_file,) = (tmp_path / "out" / "tables").glob("wandb/offline-run-*/files/media/table/table/base2new_*.table.json")
    long = json.loads(long_file.read_text())
    rows = [dict(zip(long["columns"], r)) for r in long["data"]]
    # the uploaded numbers are the run's: base, new and H of prograd on oxford_pets
    cell = {r["column"]: r["mean"] for r in rows if r["method"] == "prograd" and r["row"] == "oxford_pets"}
    assert cell["Base"] == b and cell["New"] == n and abs(cell["H"] - summary["test/H"]) < 1e-9
