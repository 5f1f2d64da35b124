"""The offline mini world: generated datasets, the pretrained prograd-mini weights, their failure modes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose

from prograd_pl.mini import generate as gen
from prograd_pl.mini.weights import WEIGHTS_ENV, MiniWeightsError, check_mini_weights, mini_weights_path
from prograd_pl.mini.world import DEFAULT_TASK, TASKS, pretrain_batch

REPO = Path(__file__).resolve().parents[1]


def small(name: str = "mini_shapes", per_class=(2, 1, 2)) -> gen.MiniTask:
    """The real task with fewer images per class (same rendering code, same pixels per index)."""
    return dataclasses.replace(TASKS[name], per_class=per_class)


def tree_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_generation_is_deterministic(tmp_path):
    task = small("mini_scenes")
    a = gen.generate_task(task, tmp_path / "a" / task.folder)
    b = gen.generate_task(task, tmp_path / "b" / task.folder)
    ha, hb = tree_hashes(a), tree_hashes(b)
    assert len([k for k in ha if k.endswith(".png")]) == sum(task.per_class) * len(task.classnames)
    assert ha == hb


def test_generated_layout_matches_coop_split_format(tmp_path):
    task = small("mini_textures")
    folder = gen.generate_task(task, tmp_path / task.folder)
    split = json.loads((folder / f"split_{task.name}.json").read_text())
    assert set(split) == {"train", "val", "test"}
    assert [len(split[k]) for k in ("train", "val", "test")] == list(task.sizes)
    for rel, label, classname in split["train"] + split["val"] + split["test"]:
        assert (folder / "images" / rel).is_file()
        assert rel.split("/")[0] == classname == task.classnames[label]


def test_interrupted_generation_leaves_no_dataset(tmp_path, monkeypatch):
    task = small()
    target = tmp_path / task.folder
    real_render = gen.render_task_item
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-generation
        return real_render(*args)

    monkeypatch.setattr(gen, "render_task_item", flaky)
    with pytest.raises(KeyboardInterrupt):
        gen.generate_task(task, target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # the temp folder is gone too

    # A half dataset left by a hard kill of some older writer (no completion marker) is not trusted.
    (target / "images" / "arrow").mkdir(parents=True)
    (target / "images" / "arrow" / "arrow_0000.png").write_bytes(b"half")
    assert not gen.is_complete(task, target)
    monkeypatch.setattr(gen, "render_task_item", real_render)
    gen.generate_task(task, target)
    assert gen.is_complete(task, target)
    assert tree_hashes(target) == tree_hashes(gen.generate_task(task, tmp_path / "fresh" / task.folder))


def test_registry_and_configs_know_the_mini_datasets():
    from prograd_pl.data.datasets.mini import MINI_DATASETS
    from prograd_pl.data.registry import get_dataset_info

    assert DEFAULT_TASK in MINI_DATASETS
    assert sum(not i.test_only for i in MINI_DATASETS.values()) >= 4
    for name, info in MINI_DATASETS.items():
        assert get_dataset_info(name) is info
        assert info.n_classes >= 8 and "{}" in info.template and "{}" in info.coop_template
        assert compose([f"dataset={name}"]).dataset.name == name
    sketch = MINI_DATASETS["mini_shapes_sketch"]
    assert sketch.test_only and sketch.sizes[:2] == (0, 0)
    assert TASKS["mini_shapes_sketch"].classnames == TASKS["mini_shapes"].classnames


def test_reader_generates_on_first_use(tmp_path):
    from prograd_pl.data.registry import load_dataset

    splits = load_dataset("mini_shapes_sketch", tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == TASKS["mini_shapes_sketch"].sizes
    assert splits.classnames == list(TASKS["mini_shapes"].classnames)
    assert all(Path(d.path).is_absolute() and Path(d.path).is_file() for d in splits.test[:5])
    again = load_dataset("mini_shapes_sketch", tmp_path)  # second use reads, does not regenerate
    assert again.test == splits.test


def test_pretraining_stream_is_deterministic():
    a_img, a_cap = pretrain_batch(0, 3, 8)
    b_img, b_cap = pretrain_batch(0, 3, 8)
    c_img, _ = pretrain_batch(0, 4, 8)
    assert a_img.dtype == np.uint8 and a_img.shape == (8, 32, 32, 3)
    assert np.array_equal(a_img, b_img) and a_cap == b_cap
    assert not np.array_equal(a_img, c_img)


def test_committed_weights_give_zero_shot_far_above_chance(tmp_path):
    """A real zero-shot run of the packaged weights on a mini task's test split (read from disk)."""
    import open_clip
    from PIL import Image

    from prograd_pl.data.registry import load_dataset
    from prograd_pl.mini.pretrain import MODEL_NAME, register_mini_config
    from prograd_pl.mini.zeroshot import to_model_input, zero_shot_accuracy

    register_mini_config()
    model = open_clip.create_model(MODEL_NAME, pretrained=str(mini_weights_path())).eval()
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    splits = load_dataset("mini_scenes", tmp_path)
    images = to_model_input([Image.open(d.path) for d in splits.test])
    labels = [d.label for d in splits.test]
    acc = zero_shot_accuracy(model, tokenizer, images, labels, splits.classnames, splits.template)
    chance = 100.0 / len(splits.classnames)
    assert 4 * chance < acc < 95.0, acc  # far above chance, far from perfect (68.25 % when built)


def test_missing_weights_name_the_file_and_the_rebuild_command(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "prograd_mini.pt"
    monkeypatch.setenv(WEIGHTS_ENV, str(missing))
    with pytest.raises(MiniWeightsError) as err:
        mini_weights_path()
    assert str(missing) in str(err.value) and "make pretrain-mini" in str(err.value)


@pytest.mark.parametrize("content", ["garbage", "lfs_pointer", "wrong_shape", "not_a_dict"])
def test_corrupt_weights_name_the_file_and_the_rebuild_command(tmp_path, content):
    path = tmp_path / "prograd_mini.pt"
    if content == "garbage":
        path.write_bytes(b"\x00\x01 not a torch file")
    elif content == "lfs_pointer":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 9000000\n")
    elif content == "wrong_shape":
        state = torch.load(mini_weights_path(), weights_only=True)
        state["token_embedding.weight"] = state["token_embedding.weight"][:, :32].clone()
        torch.save(state, path)
    else:
        torch.save([1, 2, 3], path)
    with pytest.raises(MiniWeightsError) as err:
        check_mini_weights(path)
    assert str(path) in str(err.value) and "make pretrain-mini" in str(err.value)


def test_packaged_weights_are_small_fp16():
    path = mini_weights_path()
    assert path.stat().st_size <= 10 * 2**20
    state = torch.load(path, weights_only=True)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}


def test_pretraining_runs_deterministically_and_writes_loadable_fp16_weights(tmp_path):
    from prograd_pl.mini.pretrain import pretrain

    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    summary = pretrain(a, steps=2, batch_size=8, warmup=1, workers=0, eval_limit=1)
    pretrain(b, steps=2, batch_size=8, warmup=1, workers=1, eval_limit=1)  # data drawn in a worker: same
    assert check_mini_weights(a) == a
    assert summary["steps"] == 2 and set(summary["zero_shot_test_acc"]) == set(TASKS)
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
