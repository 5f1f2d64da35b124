"""`dataset=folder dataset.path=<tree>`: a user's own ImageFolder tree, end to end and in its parts."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose
from data_trees import _write_image, build_folder_tree

from prograd_pl.app.identity import identity
from prograd_pl.data.base import DatasetError
from prograd_pl.data.base2new import subsample_classes
from prograd_pl.data.fewshot import fewshot_split
from prograd_pl.data.registry import load_dataset

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


def run_app(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prograd_pl", *overrides, f"output_root={tmp_path / 'out'}",
         f"cache_root={tmp_path / 'cache'}", "progress_bar=none", "logger=none", "trainer.max_epochs=1"],
        capture_output=True, text=True, env=ENV, check=False, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("setting", [
    pytest.param("fewshot", marks=pytest.mark.slow),  # (11 s; base2new below runs the same path and the split too)
    "base2new",
])  # fmt: skip
def test_folder_dataset_trains_and_evaluates(tmp_path: Path, setting: str) -> None:
    """The user's line on a tree of three classes with a dozen images each, one class name with a space."""
    tree = build_folder_tree(tmp_path / "my_birds")
    proc = run_app(
        tmp_path, "dataset=folder", f"dataset.path={tree}", "model=tiny", "shots=2", f"setting={setting}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    split = tree / "split_prograd.json"
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if str(split) in line]
    assert len(said) == 1 and "no split file, wrote one" in said[0]
    result = json.loads(next((tmp_path / "out").rglob("results.json")).read_text())
    assert result["dataset"] == "folder" and result["shots"] == 2
    if setting == "base2new":
        assert result["n_classes"] == 2 and result["evals"][0]["subsample"] == "new"
        assert result["metrics"]["n_test"] == 2 * 4  # base classes red fox, snowy owl: 4 test images each
    else:
        assert result["n_classes"] == 3 and result["metrics"]["n_test"] == 12
    assert result["identity"]["dataset"]["split_sha256"]
    caches = list((tree / "split_fewshot").rglob("shot_2-seed_1.json"))
    assert len(caches) == 1 and caches[0].parent.name.startswith("split_prograd-")


def test_model_auto_gives_the_papers_rn50_and_offline_ends_in_one_sentence(tmp_path: Path) -> None:
    """Nothing cached and the hub offline: exit 1 without asking the hub (no retries, at most the two library
    warnings), one sentence naming the file and where to put it. (How long that takes is make bench's "time to first
    answer, weights not on this machine": a speed goal, not a timed test.)"""
    tree = build_folder_tree(tmp_path / "tree")
    cfg = compose(["dataset=folder", f"dataset.path={tree}"])
    assert (cfg.model.name, cfg.model.pretrained) == ("RN50-quickgelu", "openai")
    env = {**ENV, "PROGRAD_WEIGHTS": str(tmp_path / "weights"), "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, "-m", "prograd_pl", "dataset=folder", f"dataset.path={tree}", "model=rn50",
         f"output_root={tmp_path / 'out'}", "logger=none", "progress_bar=none"],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert not [ln for ln in lines if "retry" in ln.lower() or "retries" in ln.lower()], lines
    last = lines[-1]
    assert last.startswith(
        "prograd_pl: error: could not obtain weights 'openai' of RN50-quickgelu: they are not on"
    )
    assert f"put it at {tmp_path / 'weights' / 'RN50.pt'}" in last and "RN50.pt" in last
    warnings = [ln for ln in lines[:-1] if "WARNING" in ln or "Warning" in ln]
    assert len(warnings) <= 2, lines


def test_missing_path_is_reported_before_the_weights(tmp_path: Path) -> None:
    proc = run_app(tmp_path, "dataset=folder")  # model=auto: RN50 openai, not on this machine
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("prograd_pl: error: dataset=folder needs dataset.path=<folder of your images>")


def test_reader_names_layouts_and_split(tmp_path: Path) -> None:
    tree = build_folder_tree(tmp_path / "t", names=("b_class", "a class", "c"), per_class=10)
    splits = load_dataset("folder", "unused", {"path": str(tree)})
    assert splits.classnames == ["a class", "b class", "c"]  # sorted folders; _ read as a space
    assert [len(splits.train), len(splits.val), len(splits.test)] == [15, 6, 9]  # 10 per class: 5/2/3
    raw = json.loads((tree / "split_prograd.json").read_text())
    assert raw["generated"]["paper_split"] is False
    first = (tree / "split_prograd.json").read_bytes()
    (tree / "split_prograd.json").unlink()
    load_dataset("folder", "unused", {"path": str(tree)})
    assert (tree / "split_prograd.json").read_bytes() == first  # deterministic
    (tree / "split_prograd.json").unlink()
    (tree / "classnames.txt").write_text("first\nsecond\nthird\n")
    assert load_dataset("folder", "", {"path": str(tree)}).classnames == ["first", "second", "third"]
    (tree / "split_prograd.json").unlink()
    (tree / "classnames.txt").write_text("a class\tAlpha\nb_class\tBravo\nc\tCharlie\n")
    assert load_dataset("folder", "", {"path": str(tree)}).classnames == ["Alpha", "Bravo", "Charlie"]

    split_tree = tmp_path / "s"
    for split, n in (("train", 4), ("val", 1), ("test", 2)):
        for label, name in enumerate(("cat", "dog_house")):
            for i in range(n):
                _write_image(split_tree / split / name / "sub" / f"{i}.png", label)
    splits = load_dataset("folder", "", {"path": str(split_tree)})
    assert splits.classnames == ["cat", "dog house"]
    assert [len(splits.train), len(splits.val), len(splits.test)] == [8, 2, 4]
    assert all("/train/" in d.path for d in splits.train) and all("/test/" in d.path for d in splits.test)
    shots = fewshot_split(splits, 2, 1, Path("unused"))
    assert len(shots.train) == 4 and len(subsample_classes(shots, "new").classnames) == 1


def test_reader_errors_are_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="needs dataset.path"):
        load_dataset("folder", "", {"path": None})
    with pytest.raises(DatasetError, match="is not a folder"):
        load_dataset("folder", "", {"path": str(tmp_path / "nope")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no class folders"):
        load_dataset("folder", "", {"path": str(tmp_path / "empty")})
    tree = build_folder_tree(tmp_path / "few", names=("a", "b"), per_class=2)
    with pytest.raises(DatasetError, match="at least 3 per class"):
        load_dataset("folder", "", {"path": str(tree)})
    tree = build_folder_tree(tmp_path / "ro", names=("a", "b"), per_class=5)
    os.chmod(tree, stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(tree, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(DatasetError, match="cannot write the split file"):
            load_dataset("folder", "", {"path": str(tree)})
    finally:
        os.chmod(tree, 0o755)


def test_identity_records_the_split(tmp_path: Path) -> None:
    """Same tree: the same identity before and after the split file exists; another tree or split: another."""
    tree = build_folder_tree(tmp_path / "a")
    base = ["dataset=folder", "model=tiny", f"output_root={tmp_path / 'out'}"]
    before = identity(compose([*base, f"dataset.path={tree}"]))
    load_dataset("folder", "", {"path": str(tree)})  # writes the split file
    after = identity(compose([*base, f"dataset.path={tree}"]))
    assert before == after and "path" not in after["dataset"]
    moved = tmp_path / "moved"
    tree.rename(moved)
    assert identity(compose([*base, f"dataset.path={moved}"])) == after  # a path never splits a folder
    other = build_folder_tree(tmp_path / "b", names=("x", "y", "z"))
    assert (
        identity(compose([*base, f"dataset.path={other}"]))["dataset"]["split_sha256"]
        != after["dataset"]["split_sha256"]
    )
    reseeded = identity(compose([*base, f"dataset.path={other}", "dataset.split_seed=2"]))
    assert reseeded["dataset"]["split_seed"] == 2
