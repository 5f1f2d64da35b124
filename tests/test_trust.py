"""Trust under reruns: sweep-order independence, a failing job does not stop a sweep, caches that cannot lie,
nothing trained is lost to a late failure, report refuses non-finite numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import compose, small_overrides
from data_trees import build_tree

from prograd_pl.app.run import run
from prograd_pl.errors import USER_ERRORS
from prograd_pl.models.checkpoint import CHECKPOINT_NAME
from prograd_pl.results import store

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prograd_pl", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=900)  # fmt: skip


def seed_result(root: Path, seed: int) -> tuple[dict, torch.Tensor]:
    (path,) = [p for p in root.rglob("results.json") if p.parent.name == f"seed{seed}"]
    return json.loads(path.read_text()), torch.load(path.parent / CHECKPOINT_NAME, weights_only=True)["ctx"]


def test_a_run_does_not_depend_on_its_place_in_a_sweep(tmp_path):
    # the default mini model: the same run alone and second in a multirun gives bit-identical context and metrics
    common = [f"data_root={tmp_path / 'data'}", "trainer.max_epochs=2", "progress_bar=none", "logger=none",
              "threads=1"]  # fmt: skip
    swept = cli(["-m", "seed=1,2", f"output_root={tmp_path / 'a'}", *common], tmp_path)
    assert swept.returncode == 0, swept.stderr[-3000:]
    alone = cli(["seed=2", f"output_root={tmp_path / 'b'}", *common], tmp_path)
    assert alone.returncode == 0, alone.stderr[-3000:]
    (ra, ca), (rb, cb) = seed_result(tmp_path / "a", 2), seed_result(tmp_path / "b", 2)
    assert torch.equal(ca, cb)
    assert ra["metrics"] == rb["metrics"] and ra["identity"] == rb["identity"]


def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4)  # eurosat is missing: its job fails, dtd's still runs
    proc = cli(["-m", "dataset=eurosat,dtd", "shots=1", *small_overrides(tmp_path)], tmp_path)
    assert proc.returncode == 1
    assert "1 job(s) of the sweep failed (the 1 other(s) ran;" in proc.stderr and "dataset=eurosat" in proc.stderr
    found = list((tmp_path / "out").rglob("results.json"))
    assert len(found) == 1 and "/dtd/" in str(found[0])
    stop = cli(["-m", "dataset=eurosat,dtd", "shots=2", "continue_on_error=false", *small_overrides(tmp_path)],
               tmp_path)  # fmt: skip
    assert stop.returncode == 1 and len(list((tmp_path / "out").rglob("results.json"))) == 1


def test_a_late_failure_keeps_the_trained_context(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    split = json.loads(next((tmp_path / "data" / "dtd").glob("split_zhou_*.json")).read_text())
    victim = tmp_path / "data" / "dtd" / "images" / split["test"][0][0]
    good = victim.read_bytes()
    victim.write_bytes(b"not an image")
    overrides = small_overrides(tmp_path, "dataset=dtd", "shots=2", "trainer.max_epochs=2", "feature_cache=false")
    with pytest.raises(USER_ERRORS, match=str(victim.name)):
        run(compose(overrides))  # training finished, evaluation failed on the corrupt test image
    (ckpt,) = list((tmp_path / "out").rglob(CHECKPOINT_NAME))
    trained = torch.load(ckpt, weights_only=True)["ctx"]
    assert list((tmp_path / "out").rglob("results.json")) == []
    victim.write_bytes(good)
    res = run(compose(overrides))  # resumes at evaluation: no training step again
    assert res["train"]["resumed_epoch"] == 2 and res["train"]["steps"] == 0 and res["train"]["epochs"] == 2
    assert torch.equal(torch.load(ckpt, weights_only=True)["ctx"], trained)


def test_feature_cache_follows_the_images_and_random_weights(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    zs = small_overrides(tmp_path, "dataset=dtd", "method=zeroshot")
    first = run(compose(zs))
    cache = tmp_path / "cache" / "features"
    assert len(list(cache.glob("*.pt"))) == 1
    # random weights (model=tiny): another seed builds other weights, so it gets its own features
    run(compose([*zs, "seed=2"]))
    assert len(list(cache.glob("*.pt"))) == 2
    # an image replaced in place: its features are encoded again, not served from the old entry
    split = json.loads(next((tmp_path / "data" / "dtd").glob("split_zhou_*.json")).read_text())
    img = tmp_path / "data" / "dtd" / "images" / split["test"][0][0]
    other = tmp_path / "data" / "dtd" / "images" / split["test"][-1][0]
    img.write_bytes(other.read_bytes())
    again = run(compose([*zs, "redo=true"]))
    assert len(list(cache.glob("*.pt"))) == 3
    assert again["metrics"]["n_test"] == first["metrics"]["n_test"]


def test_unwritable_cache_only_warns(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    blocker = tmp_path / "cache_is_a_file"
    blocker.write_text("x")
    res = run(compose(small_overrides(tmp_path, "dataset=dtd", "method=zeroshot", f"cache_root={blocker / 'c'}")))
    assert 0.0 <= res["metrics"]["acc"] <= 100.0


def test_results_with_a_non_finite_accuracy_are_refused(tmp_path):
    good = {"schema_version": 1, "method": "coop", "dataset": "dtd", "eval_dataset": "dtd", "backbone": "b",
            "pretrained": None, "setting": "fewshot", "subsample": "all", "shots": 1, "seed": 1, "n_classes": 2,
            "metrics": {"acc": float("nan"), "n_test": 4}, "train": {"epochs": 1, "seconds": 1.0}, "config": {},
            "versions": {}}  # fmt: skip
    path = tmp_path / "run" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(good).replace("NaN", "NaN"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert list(store.iter_results(tmp_path)) == []
    assert any(str(path) in str(w.message) and "finite" in str(w.message) for w in caught)
