"""Preemption-safe runs: last.ckpt while training (no frozen CLIP weights), an interrupted run resumed by a rerun
ends with exactly the context of an uninterrupted one; SIGTERM exits 143; a killed (-9) run resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose, small_overrides
from data_trees import build_tree
from scaleout_helpers import Crash, noisy_images

from prograd_pl.app.resume import LAST_NAME
from prograd_pl.app.run import run
from prograd_pl.models.checkpoint import CHECKPOINT_NAME

EPOCHS = 4  # 16 training images, batch 4: 4 steps per epoch


def _overrides(tmp_path: Path, out: str, *extra: str) -> list[str]:
    return small_overrides(tmp_path, "dataset=dtd", "shots=4", f"trainer.max_epochs={EPOCHS}", "data.batch_size=4",
                           "threads=1", f"output_root={tmp_path / out}", *extra)  # fmt: skip


def _data(tmp_path: Path) -> None:
    build_tree("dtd", tmp_path / "data", n_classes=4, per_class=(6, 3, 3))
    assert noisy_images(tmp_path / "data" / "dtd" / "images") > 0


def _ctx(run_dir: str | Path) -> torch.Tensor:
    return torch.load(Path(run_dir) / CHECKPOINT_NAME, weights_only=True)["ctx"]


def test_crashed_run_resumes_to_the_uninterrupted_context(tmp_path):
    _data(tmp_path)
    plain = run(compose(_overrides(tmp_path, "plain")))
    assert plain["train"]["resumed_epoch"] == 0 and plain["train"]["steps"] == 4 * EPOCHS
    assert not (Path(plain["run_dir"]) / LAST_NAME).exists()  # removed once results.json is written

    # crash in the middle of epoch 3 (after step 10): last.ckpt holds the state after epoch 2
    stop = ["+callbacks.stop._target_=scaleout_helpers.StopAt", "+callbacks.stop.step=10", "+callbacks.stop.how=raise"]
    with pytest.raises(Crash):
        run(compose(_overrides(tmp_path, "crash", *stop)))
    folder = Path(plain["run_dir"].replace(str(tmp_path / "plain"), str(tmp_path / "crash")))
    last = folder / LAST_NAME
    assert last.is_file() and not (folder / "results.json").exists()
    blob = torch.load(last, map_location="cpu", weights_only=True)
    assert set(blob["state_dict"]) == {"method.prompt_learner.ctx"}  # the learned context only, no CLIP weights
    assert blob["epoch"] == 1 and blob["prograd_pl"]["steps_done"] == 8 and blob["optimizer_states"]
    assert last.stat().st_size < 200_000

    resumed = run(compose(_overrides(tmp_path, "crash")))
    assert resumed["run_dir"] == str(folder)
    assert resumed["train"]["resumed_epoch"] == 2 and resumed["train"]["steps"] == 4 * EPOCHS
    assert resumed["train"]["conflict_rate"] == plain["train"]["conflict_rate"]
    assert torch.equal(_ctx(folder), _ctx(plain["run_dir"]))
    assert resumed["metrics"]["acc"] == plain["metrics"]["acc"]
    assert not last.exists()

    # Lightning's SLURM requeue checkpoint (hpc_ckpt_<n>.ckpt in the run folder) is resumed the same way, then removed
    with pytest.raises(Crash):
        run(compose(_overrides(tmp_path, "hpc", *stop)))
    (last_hpc,) = (tmp_path / "hpc").rglob(LAST_NAME)
    last_hpc.rename(last_hpc.with_name("hpc_ckpt_1.ckpt"))
    requeued = run(compose(_overrides(tmp_path, "hpc")))
    assert requeued["train"]["resumed_epoch"] == 2 and torch.equal(_ctx(requeued["run_dir"]), _ctx(plain["run_dir"]))
    assert not list(Path(requeued["run_dir"]).glob("*.ckpt"))

    # redo=true starts over (the stale last.ckpt is ignored and replaced)
    with pytest.raises(Crash):
        run(compose(_overrides(tmp_path, "again", *stop)))
    fresh = run(compose(_overrides(tmp_path, "again", "redo=true")))
    assert fresh["train"]["resumed_epoch"] == 0
    assert torch.equal(_ctx(fresh["run_dir"]), _ctx(plain["run_dir"]))


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "prograd_pl", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


@pytest.mark.slow
def test_kill_9_sigterm_and_sigint_then_rerun_resume_exactly(tmp_path):
    _data(tmp_path)
    base = _overrides(tmp_path, "out")
    proc = _cli([*base, "output_root=" + str(tmp_path / "plain")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (plain,) = (tmp_path / "plain").rglob("results.json")

    for how, code in (("kill", -9), ("term", 143), ("int", 130)):
        out = tmp_path / how
        stop = ["+callbacks.stop._target_=scaleout_helpers.StopAt", "+callbacks.stop.step=10",
                f"+callbacks.stop.how={how}"]  # fmt: skip
        proc = _cli([*base, f"output_root={out}", *stop], tmp_path)
        assert proc.returncode == code, proc.stderr[-3000:]
        (last,) = out.rglob(LAST_NAME)
        assert not list(out.rglob("results.json")) and not list(out.rglob(".last.ckpt.tmp"))
        proc = _cli([*base, f"output_root={out}"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        rec = json.loads((last.parent / "results.json").read_text())
        assert rec["train"]["resumed_epoch"] == 2 and not last.exists()
        assert torch.equal(_ctx(last.parent), _ctx(plain.parent)), how
