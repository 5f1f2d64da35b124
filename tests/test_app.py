"""The Hydra app end to end on miniature dataset trees with the tiny model: runs, sweeps, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose, small_overrides
from data_trees import build_tree

from prograd_pl.app.run import run
from prograd_pl.errors import USER_ERRORS
from prograd_pl.models.checkpoint import CHECKPOINT_NAME


def results_under(root: Path) -> list[Path]:
    return sorted(root.rglob("results.json"))


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "prograd_pl", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def test_user_line_sweeps_three_seeds_and_reruns_nothing(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4, per_class=(6, 3, 3))
    args = ["dataset=dtd", "shots=4", "-m", "seed=1,2,3", *small_overrides(tmp_path), "logger=csv"]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = results_under(tmp_path / "out")
    assert len(found) == 3
    recs = [json.loads(p.read_text()) for p in found]
    assert sorted(r["seed"] for r in recs) == [1, 2, 3]
    assert {r["method"] for r in recs} == {"prograd"} and {r["shots"] for r in recs} == {4}
    for r in recs:
        assert r["backbone"] == "prograd-tiny" and r["metrics"]["n_test"] == 12 and r["train"]["epochs"] == 1
        assert 0.0 <= r["metrics"]["acc"] <= 100.0 and r["setting"] == "fewshot" and r["subsample"] == "all"
        assert r["config"]["dataset"]["name"] == "dtd" and "torch" in r["versions"]
    caches = sorted((tmp_path / "data" / "dtd" / "split_fewshot").glob("*.json"))
    splits = [json.loads(p.read_text())["train"] for p in caches]
    assert len(splits) == 3 and splits[0] != splits[1] != splits[2]
    # checkpoints hold only the context and what rebuilds the prompt
    ckpt = torch.load(found[0].parent / CHECKPOINT_NAME, weights_only=True)
    assert set(ckpt) == {"ctx", "learned", "meta"} and ckpt["ctx"].shape == (16, 32)
    assert set(ckpt["learned"]) == {"ctx"} and torch.equal(ckpt["learned"]["ctx"], ckpt["ctx"])  # no CLIP weights
    assert ckpt["meta"]["backbone"] == "prograd-tiny" and ckpt["meta"]["n_ctx"] == 16

    # a 2 seeds x 2 methods sweep over the same folder: prograd seeds 1, 2 are finished, only coop runs
    grid = ["dataset=dtd", "shots=4", "-m", "seed=1,2", "method=coop,prograd", *small_overrides(tmp_path), "logger=csv"]
    proc = run_cli(grid, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = results_under(tmp_path / "out")
    assert len(found) == 5 and sum("/coop/" in str(p) for p in found) == 2
    assert [json.loads(p.read_text())["train"] for p in caches] == splits  # identical splits when re-run

    # rerun: everything is finished, nothing runs; delete one: exactly that one reruns
    mtimes = {p: p.stat().st_mtime_ns for p in found}
    victim = next(p for p in found if "/coop/" in str(p))
    victim.unlink()
    proc = run_cli(grid, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = results_under(tmp_path / "out")
    assert again == found
    assert [p for p in again if p.stat().st_mtime_ns != mtimes[p]] == [victim]

    # the nearest vocabulary words of a learned context
    proc = subprocess.run([sys.executable, "-m", "prograd_pl", "interpret", str(victim.parent / CHECKPOINT_NAME),
                           "--topk", "2"], capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len([ln for ln in proc.stdout.splitlines() if ln.strip()]) >= 16


def test_base2new_writes_base_and_new(tmp_path):
    build_tree("oxford_pets", tmp_path / "data", n_classes=5, per_class=(4, 2, 3))
    cfg = compose(small_overrides(tmp_path, "dataset=oxford_pets", "setting=base2new", "shots=2", "method=kd"))
    res = run(cfg)
    assert res["subsample"] == "base" and res["n_classes"] == 3 and res["metrics"]["n_test"] == 9
    new = json.loads(next((tmp_path / "out").rglob("evals/oxford_pets-new/results.json")).read_text())
    assert new["subsample"] == "new" and new["n_classes"] == 2 and new["metrics"]["n_test"] == 6
    assert new["method"] == "kd" and new["seed"] == 1


def test_domain_generalisation_from_one_command(tmp_path):
    for name in ("imagenet", "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"):
        build_tree(name, tmp_path / "data", n_classes=4, per_class=(3, 0, 2))
    cfg = compose(small_overrides(tmp_path, "dataset=imagenet", "setting=dg", "shots=2", "method=coop"))
    res = run(cfg)
    assert res["eval_dataset"] == "imagenet"
    evals = {json.loads(p.read_text())["eval_dataset"] for p in (tmp_path / "out").rglob("evals/*/results.json")}
    assert evals == {"imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"}


def test_eval_only_checkpoint_on_another_dataset(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    build_tree("eurosat", tmp_path / "data", n_classes=5)
    trained = run(compose(small_overrides(tmp_path, "dataset=dtd", "shots=2", "method=prograd")))
    ckpt = Path(trained["run_dir"])
    res = run(compose(small_overrides(tmp_path, "dataset=eurosat", f"ckpt={ckpt}", "output_root=" + str(tmp_path / "ev"))))
    assert res["dataset"] == "eurosat" and res["n_classes"] == 5 and res["train"]["epochs"] == 0
    assert res["ckpt"] == str(ckpt)


def test_zeroshot_and_feature_cache_is_exact_and_keyed(tmp_path):
    build_tree("caltech101", tmp_path / "data", n_classes=4)
    build_tree("dtd", tmp_path / "data", n_classes=4)
    cached = run(compose(small_overrides(tmp_path, "dataset=caltech101", "method=zeroshot")))
    entries = list((tmp_path / "cache" / "features").glob("*.pt"))
    assert cached["shots"] == 0 and len(entries) == 1
    plain = run(compose(small_overrides(tmp_path, "dataset=caltech101", "method=zeroshot", "feature_cache=false",
                                        f"output_root={tmp_path / 'o2'}")))  # fmt: skip
    assert plain["metrics"]["acc"] == cached["metrics"]["acc"]
    again = run(compose(small_overrides(tmp_path, "dataset=caltech101", "method=coop", "shots=1")))
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 1  # reused by another method
    assert again["metrics"]["n_test"] == cached["metrics"]["n_test"]
    run(compose(small_overrides(tmp_path, "dataset=dtd", "method=zeroshot")))
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 2  # another test set, another key


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method.prompt.n_ctx=2"], "n_ctx=2 is smaller than the 3 words"),
        (["method.prompt.csc=true"], "csc=true cannot be combined"),
        (["method.prompt.position=left"], "position='left'"),
        (["shots=0"], "shots must be an integer >= 1"),
        (["dataset=caltech101"], "caltech-101"),
        (["method.name=sgd"], "method.name='sgd'"),
        (["model.name=NoSuchNet"], "model.name='NoSuchNet'"),
        (["trainer.precision=64"], "trainer.precision='64'"),
        (["ckpt=/nonexistent/prompt_learner.pt"], "does not exist"),
        (["method.optim.lr=1e30"], "loss is"),
    ],
)
def test_bad_input_one_sentence_and_nothing_written(tmp_path, overrides, message):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    cfg = compose(small_overrides(tmp_path, "dataset=dtd", "shots=2", "method.warmup_epochs=0",
                                  "trainer.max_epochs=3", *overrides))  # fmt: skip
    with pytest.raises(USER_ERRORS, match=message) as info:
        run(cfg)
    assert "\n" not in str(info.value)
    assert results_under(tmp_path / "out") == []
    assert list((tmp_path / "out").rglob(CHECKPOINT_NAME)) == []


def test_checkpoint_from_another_backbone_is_refused(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    trained = run(compose(small_overrides(tmp_path, "dataset=dtd", "shots=1")))
    blob = torch.load(Path(trained["run_dir"]) / CHECKPOINT_NAME, weights_only=True)
    blob["meta"]["backbone"] = "RN50-quickgelu"
    torch.save(blob, tmp_path / "other.pt")
    cfg = compose(small_overrides(tmp_path, "dataset=dtd", f"ckpt={tmp_path / 'other.pt'}", f"output_root={tmp_path / 'o3'}"))
    with pytest.raises(USER_ERRORS, match="trained on backbone 'RN50-quickgelu'"):
        run(cfg)
    assert results_under(tmp_path / "o3") == []


def test_unknown_dataset_fails_before_any_job(tmp_path):
    proc = run_cli(["-m", "dataset=nosuch", "seed=1,2", *small_overrides(tmp_path)], tmp_path)
    assert proc.returncode != 0 and "nosuch" in proc.stderr
    assert not (tmp_path / "out").exists() or results_under(tmp_path / "out") == []
