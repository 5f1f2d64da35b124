"""Dataset layer: readers on miniature real-layout trees, few-shot sampling and cache, CoOp pickle
import, base/new splits, transforms, the data module and ``data check``."""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys
import types
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from data_trees import FOLDERS, NAMES, build_tree, expected_classnames, tree_sizes

from prograd_pl.data import fewshot as fewshot_mod
from prograd_pl.data import registry, transforms  # (not test_transform: pytest would collect it)
from prograd_pl.data.base import DatasetError, DatasetSplits, Datum
from prograd_pl.data.base2new import subsample_classes
from prograd_pl.data.check import main as check_main
from prograd_pl.data.datamodule import FewShotDataModule
from prograd_pl.data.datasets import caltech101, eurosat, oxford_pets, stanford_cars, sun397, ucf101
from prograd_pl.data.fewshot import cache_file, fewshot_split, import_coop_pickle
from prograd_pl.data.registry import DATASETS, dataset_names, get_dataset_info, load_dataset

REPO = Path(__file__).resolve().parents[1]
NORM = {"mean": (0.48145466, 0.4578275, 0.40821073), "std": (0.26862954, 0.26130258, 0.27577711)}  # CLIP's


def _splits(n_classes: int, per_class: int, val_per_class: int = 5, name: str = "dtd") -> DatasetSplits:
    """In-memory splits (no files) for sampling tests."""
    names = [f"c{i}" for i in range(n_classes)]

    def items(split: str, k: int) -> list[Datum]:
        return [Datum(f"/x/{split}/{c}/{j}.jpg", i, c) for j in range(k) for i, c in enumerate(names)]

    return DatasetSplits(
        name, items("train", per_class), items("val", val_per_class), items("test", 2), names, "{}"
    )


# --- readers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_reader_reads_real_layout(tmp_path: Path, name: str) -> None:
    build_tree(name, tmp_path)
    splits = load_dataset(name, tmp_path)
    info = get_dataset_info(name)
    assert splits.name == name and splits.template == info.template
    assert splits.classnames == expected_classnames(name)
    assert (len(splits.train), len(splits.val), len(splits.test)) == tree_sizes(name)
    for d in [*splits.train, *splits.val, *splits.test]:
        assert os.path.isabs(d.path) and os.path.isfile(d.path)
        assert d.path.startswith(str(tmp_path / info.folder))
        assert splits.classnames[d.label] == d.classname
    assert sorted({d.label for d in splits.test}) == list(range(4))


def test_renaming_rules() -> None:
    assert [caltech101.classname(f) for f in ("airplanes", "Faces", "Leopards", "Motorbikes", "chair")] == [
        "airplane",
        "face",
        "leopard",
        "motorbike",
        "chair",
    ]
    assert oxford_pets.breed("American_Bulldog_12.jpg") == "american_bulldog"
    assert oxford_pets.breed("Abyssinian_1.jpg") == "abyssinian"
    assert stanford_cars.year_to_front("Tesla Model S Sedan 2012") == "2012 Tesla Model S Sedan"
    assert sun397.classname("/a/apartment_building/outdoor") == "outdoor apartment_building"
    assert sun397.classname("/a/abbey") == "abbey"
    assert ucf101.split_camel_case("ApplyEyeMakeup") == "Apply_Eye_Makeup"
    assert ucf101.split_camel_case("YoYo") == "Yo_Yo"
    assert eurosat.RENAMED["SeaLake"] == "Sea or Lake" and len(eurosat.RENAMED) == 10


def test_imagenet_variant_labels(tmp_path: Path) -> None:
    # -A: a subset of classnames.txt, labelled 0..n-1 over the sorted wnid folders; README.txt ignored.
    build_tree("imagenet_a", tmp_path, n_classes=3, per_class=(0, 0, 1))
    a = load_dataset("imagenet_a", tmp_path)
    assert a.classnames == ["tench", "great white shark", "hammerhead shark"]
    assert [d.label for d in a.test] == [0, 1, 2]
    # V2: folder i <-> i-th line, numeric order (folder "10" is class 10, not 2).
    build_tree("imagenetv2", tmp_path, n_classes=12, per_class=(0, 0, 1))
    v2 = load_dataset("imagenetv2", tmp_path)
    assert [d.label for d in v2.test] == list(range(12))
    assert all(Path(d.path).parent.name == str(d.label) for d in v2.test)
    assert v2.classnames[10] == "class 10"


def test_imagenet_is_sorted_and_uses_val_as_test(tmp_path: Path) -> None:
    ddir = build_tree("imagenet", tmp_path, n_classes=3, per_class=(4, 0, 2))
    splits = load_dataset("imagenet", tmp_path)
    assert splits.val == [] and len(splits.test) == 6
    assert [d.path for d in splits.train] == sorted(d.path for d in splits.train)
    assert all("/images/val/" in d.path for d in splits.test)
    (ddir / "images" / "val" / "n01440764").rename(ddir / "images" / "val" / "n99999999")
    with pytest.raises(DatasetError, match="differ"):
        load_dataset("imagenet", tmp_path)


def test_missing_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset("dtd", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "dtd") in msg and "docs/DATASETS.md" in msg


def test_missing_listed_image_is_named(tmp_path: Path) -> None:
    for per_class in ((2, 1, 1), (20, 8, 8)):  # few files per folder: stat each; many: one listing
        root = tmp_path / str(per_class[0])
        ddir = build_tree("food101", root, n_classes=3, per_class=per_class)
        victim = max((ddir / "images" / "baklava").iterdir())
        victim.unlink()
        with pytest.raises(DatasetError, match=str(victim)):
            load_dataset("food101", root)


def test_missing_split_file_and_bad_json(tmp_path: Path) -> None:
    ddir = build_tree("dtd", tmp_path)
    split = ddir / "split_zhou_DescribableTextures.json"
    split.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset("dtd", tmp_path)
    split.unlink()
    with pytest.raises(DatasetError, match=str(split)):
        load_dataset("dtd", tmp_path)


def test_conflicting_classnames(tmp_path: Path) -> None:
    ddir = build_tree("dtd", tmp_path)
    split = ddir / "split_zhou_DescribableTextures.json"
    raw = json.loads(split.read_text())
    raw["test"][0][2] = "not-" + raw["test"][0][2]
    split.write_text(json.dumps(raw))
    with pytest.raises(DatasetError, match="two class names"):
        load_dataset("dtd", tmp_path)


def test_aircraft_unknown_variant(tmp_path: Path) -> None:
    ddir = build_tree("fgvc_aircraft", tmp_path)
    with (ddir / "images_variant_val.txt").open("a") as f:
        f.write("1234567 Boeing 999\n")
    with pytest.raises(DatasetError, match="'Boeing 999'"):
        load_dataset("fgvc_aircraft", tmp_path)


# --- registry ------------------------------------------------------------------------------------


def test_registry() -> None:
    assert dataset_names() == list(NAMES)
    assert {n: i.folder for n, i in DATASETS.items()} == FOLDERS
    pets = get_dataset_info("oxford_pets")
    assert (
        pets.template == "a type of pet, a photo of a {}."
        and pets.coop_template == "a photo of a {}, a type of pet."
    )
    assert get_dataset_info("dtd").coop_template == "{} texture."
    assert get_dataset_info("food101").template == "a type of food, a photo of {}."
    assert get_dataset_info("imagenet_r").n_classes == 200 and get_dataset_info("imagenet_r").test_only
    assert (
        sum(i.n_classes for i in DATASETS.values() if not i.test_only)
        == 1000 + 100 + 37 + 196 + 102 + 101 + 100 + 397 + 47 + 10 + 101
    )
    assert get_dataset_info("caltech101").sizes == (4128, 1649, 2465)
    with pytest.raises(DatasetError) as err:
        get_dataset_info("cifar10")
    assert "cifar10" in str(err.value) and "oxford_pets" in str(err.value)
    from conftest import compose

    for name in NAMES:  # every dataset has its config, which names it
        assert compose([f"dataset={name}"]).dataset.name == name


def test_mini_datasets_follow_the_real_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def reader(dataset_dir: Path) -> DatasetSplits:  # a mini reader generates its folder itself
        calls.append(dataset_dir)
        return replace(_splits(2, 3), name="mini_x")

    info = registry.DatasetInfo(
        "mini_x", "mini/x", "a photo of a {}.", "a photo of a {}.", 2, None, False, reader
    )
    monkeypatch.setitem(registry.MINI_DATASETS, "mini_x", info)
    assert get_dataset_info("mini_x") is info and "mini_x" in dataset_names(include_mini=True)
    assert "mini_x" not in dataset_names()
    assert load_dataset("mini_x", tmp_path).name == "mini_x" and calls == [tmp_path / "mini" / "x"]
    with pytest.raises(DatasetError, match="mini_x"):
        get_dataset_info("nope")


# --- few-shot ------------------------------------------------------------------------------------


def test_fewshot_counts_and_determinism() -> None:
    splits = _splits(5, per_class=10)
    fs = fewshot_split(splits, 8, seed=1)
    for items, k in ((fs.train, 8), (fs.val, 4)):
        counts = {label: sum(d.label == label for d in items) for label in range(5)}
        assert counts == dict.fromkeys(range(5), k)
    assert fs.test == splits.test and fs.classnames == splits.classnames
    assert len({d.path for d in fs.train}) == len(fs.train)  # no repetition
    random.seed(12345)
    again = fewshot_split(splits, 8, seed=1)
    random.seed(999)
    assert fewshot_split(splits, 8, seed=1).train == again.train == fs.train
    assert fewshot_split(splits, 8, seed=2).train != fs.train
    assert fewshot_split(replace(splits, name="eurosat"), 8, seed=1).train != fs.train
    assert len(fewshot_split(splits, 1, seed=1).val) == 5


def test_fewshot_short_classes_warn_once() -> None:
    splits = _splits(3, per_class=10)
    splits.train = [
        d for d in splits.train if not (d.label == 2 and d.path.endswith(("/5.jpg", "/6.jpg", "/7.jpg")))
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fs = fewshot_split(splits, 8, seed=1)
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "dtd" in msg and "c2 (7)" in msg and "8" in msg
    assert sum(d.label == 2 for d in fs.train) == 7


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4"])
def test_fewshot_bad_shots(bad: object) -> None:
    with pytest.raises(DatasetError, match="shots"):
        fewshot_split(_splits(2, 4), bad, seed=1)  # type: ignore[arg-type]


def test_fewshot_cache_written_reused_portable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_tree("dtd", tmp_path / "a")
    splits = load_dataset("dtd", tmp_path / "a")
    fs = fewshot_split(splits, 2, seed=3, data_root=tmp_path / "a")
    cache = tmp_path / "a" / "dtd" / "split_fewshot" / "shot_2-seed_3.json"
    assert cache == cache_file(tmp_path / "a" / "dtd", 2, 3) and cache.is_file()
    raw = json.loads(cache.read_text())
    assert raw["dataset"] == "dtd" and raw["shots"] == 2 and raw["seed"] == 3
    assert all(not os.path.isabs(rel) and rel.startswith("images/") for rel, _, _ in raw["train"])
    assert len(raw["train"]) == 8 and len(raw["val"]) == 8
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temp files left
    # Reused: sampling is not called again, and a moved data root still works.
    monkeypatch.setattr(fewshot_mod, "sample_fewshot", lambda *a: pytest.fail("cache not used"))
    os.rename(tmp_path / "a", tmp_path / "b")
    moved = load_dataset("dtd", tmp_path / "b")
    again = fewshot_split(moved, 2, seed=3, data_root=tmp_path / "b")
    strip = [(Path(d.path).relative_to(tmp_path / "b"), d.label) for d in again.train]
    assert strip == [(Path(d.path).relative_to(tmp_path / "a"), d.label) for d in fs.train]
    assert all(os.path.isfile(d.path) for d in again.train + again.val)


def test_fewshot_cache_atomic_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_tree("dtd", tmp_path)
    splits = load_dataset("dtd", tmp_path)
    fewshot_split(splits, 1, seed=1, data_root=tmp_path)
    cache = cache_file(tmp_path / "dtd", 1, 1)
    before = cache.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(fewshot_mod.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        fewshot_mod.write_fewshot_cache(cache, tmp_path / "dtd", "dtd", 1, 1, splits.train[:1], [])
    assert cache.read_bytes() == before
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]
    # A failing write inside fewshot_split is only a warning (e.g. a read-only shared data root).
    fs = fewshot_split(splits, 2, seed=1, data_root=tmp_path)
    assert len(fs.train) == 8 and not cache_file(tmp_path / "dtd", 2, 1).exists()


@pytest.mark.parametrize(
    "content, match",
    [
        ("{truncated", "corrupt"),
        ('{"train": 3, "val": []}', "corrupt"),
        ('{"train": [["images/nope/x.jpg", 0, "banded"]], "val": []}', "does not exist"),
        ('{"train": [["../../etc/passwd", 0, "banded"]], "val": []}', "corrupt"),
        ('{"train": [["images/banded/banded_0001.jpg", 1, "banded"]], "val": []}', "does not match"),
        ('{"dataset": "dtd", "shots": 4, "train": [], "val": []}', "shots=4"),
    ],
)
def test_fewshot_bad_cache_is_named_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, match: str
) -> None:
    # a damaged cache is never trusted (issue 25): one warning names it and why, and the subset is drawn again
    build_tree("dtd", tmp_path)
    cache = cache_file(tmp_path / "dtd", 2, 1)
    cache.parent.mkdir(parents=True)
    cache.write_text(content)
    with caplog.at_level("WARNING", logger="prograd_pl.data.fewshot"):
        fs = fewshot_split(load_dataset("dtd", tmp_path), 2, seed=1, data_root=tmp_path)
    (warned,) = [r.getMessage() for r in caplog.records if "rebuilding the few-shot cache" in r.getMessage()]
    assert str(cache) in warned and match in warned and "\n" not in warned
    fresh = fewshot_split(load_dataset("dtd", tmp_path), 2, seed=1)
    assert fs.train == fresh.train and fs.val == fresh.val
    full = load_dataset("dtd", tmp_path)
    assert json.loads(cache.read_text())["source_sha256"] == fewshot_mod.source_digest(full, tmp_path / "dtd")


# --- CoOp pickles --------------------------------------------------------------------------------


@pytest.fixture
def dassl_datum(monkeypatch: pytest.MonkeyPatch) -> type:
    """A stand-in for ``dassl.data.datasets.base_dataset.Datum`` registered under Dassl's module name."""
    mod_name = "dassl.data.datasets.base_dataset"
    parts = mod_name.split(".")
    for i in range(1, len(parts) + 1):
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))

    class Datum:
        def __init__(self, impath: str, label: int, classname: str) -> None:
            self._impath, self._label, self._domain, self._classname = impath, label, 0, classname

    Datum.__module__ = mod_name
    Datum.__qualname__ = "Datum"
    sys.modules[mod_name].Datum = Datum  # type: ignore[attr-defined]
    return Datum


def _coop_pickle(datum_cls: type, items: list[Datum], old_root: str, new_root: Path, protocol: int) -> bytes:
    def to_dassl(d: Datum) -> object:
        return datum_cls(old_root + "/" + str(Path(d.path).relative_to(new_root)), d.label, d.classname)

    return pickle.dumps({"train": [to_dassl(d) for d in items[:4]], "val": [to_dassl(items[4])]}, protocol)


@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
def test_coop_pickle_import(tmp_path: Path, dassl_datum: type, protocol: int) -> None:
    build_tree("stanford_cars", tmp_path, n_classes=4, per_class=(2, 1, 1))
    splits = load_dataset("stanford_cars", tmp_path)
    train = [d for d in splits.train if d.label in (0, 1)][:4]
    items = [*train, next(d for d in splits.val if d.label == 0)]
    pkl = cache_file(tmp_path / "stanford_cars", 2, 1, ".pkl")
    pkl.parent.mkdir(parents=True)
    pkl.write_bytes(
        _coop_pickle(
            dassl_datum, items, "/data1/CoOpData/stanford_cars", tmp_path / "stanford_cars", protocol
        )
    )
    tr, va = import_coop_pickle(pkl, tmp_path / "stanford_cars", tmp_path)
    assert tr == items[:4] and va == items[4:]
    fs = fewshot_split(splits, 2, seed=1, data_root=tmp_path)  # prefers the pkl, then writes the JSON
    assert fs.train == items[:4] and fs.val == items[4:]
    assert json.loads(cache_file(tmp_path / "stanford_cars", 2, 1).read_text())["train"][0][0].startswith(
        "cars_"
    )


def test_coop_pickle_reroots_on_image_folder(tmp_path: Path, dassl_datum: type) -> None:
    build_tree("dtd", tmp_path / "root")
    splits = load_dataset("dtd", tmp_path / "root")
    # Old root named the dataset folder differently: the image folder ("images") is the anchor.
    data = pickle.dumps(
        {
            "train": [
                dassl_datum("/mnt/x/DTD/images/" + d.path.split("/images/")[1], d.label, d.classname)
                for d in splits.train[:2]
            ]
        }
    )
    pkl = tmp_path / "shot.pkl"
    pkl.write_bytes(data)
    tr, va = import_coop_pickle(pkl, tmp_path / "root" / "dtd", tmp_path / "root")
    assert tr == splits.train[:2] and va == []


def test_malicious_pickle_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    build_tree("dtd", tmp_path)
    pkl = cache_file(tmp_path / "dtd", 1, 1, ".pkl")
    pkl.parent.mkdir(parents=True)
    pkl.write_bytes(pickle.dumps({"train": [Evil()]}))
    with pytest.raises(DatasetError, match="refus") as err:
        fewshot_split(load_dataset("dtd", tmp_path), 1, seed=1, data_root=tmp_path)
    assert "system" in str(err.value) and str(pkl) in str(err.value)
    assert not marker.exists()
    pkl.write_bytes(pickle.dumps({"train": [], "x": random.Random}))
    with pytest.raises(DatasetError, match="random.Random"):
        import_coop_pickle(pkl, tmp_path / "dtd", tmp_path)


# --- base / new ----------------------------------------------------------------------------------


def test_subsample_classes() -> None:
    splits = _splits(5, per_class=3)
    base = subsample_classes(splits, "base")
    new = subsample_classes(splits, "new")
    assert base.classnames == ["c0", "c1", "c2"] and new.classnames == ["c3", "c4"]
    assert {d.label for d in new.test} == {0, 1} and all(
        new.classnames[d.label] == d.classname for d in new.test
    )
    assert len(base.train) == 9 and len(base.val) == 15 and len(base.test) == 6 and len(new.train) == 6
    assert base.name == "dtd-base" and new.name == "dtd-new"
    assert subsample_classes(splits, "all") is splits
    with pytest.raises(DatasetError, match="'novel'"):
        subsample_classes(splits, "novel")


# --- transforms and data module ------------------------------------------------------------------


def test_transforms_and_datamodule(tmp_path: Path) -> None:
    build_tree("eurosat", tmp_path, n_classes=3, per_class=(5, 1, 3))
    splits = load_dataset("eurosat", tmp_path)
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    # CLIP's normalisation, from open_clip's constants (one home)
    assert tuple(NORM["mean"]) == OPENAI_DATASET_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert tuple(NORM["std"]) == OPENAI_DATASET_STD and NORM["std"][0] == 0.26862954
    t = transforms.test_transform(16, **NORM).transforms
    assert t[0].interpolation.value == "bicubic" and t[0].size == 16 and t[1].size == (16, 16)
    assert tuple(t[-1].mean) == OPENAI_DATASET_MEAN
    r = transforms.train_transform(16, **NORM).transforms[0]
    assert r.scale == (0.08, 1.0) and r.interpolation.value == "bicubic"

    dm = FewShotDataModule(
        splits.train, splits.test, image_size=16, batch_size=4, test_batch_size=5, num_workers=0, seed=7, **NORM
    )
    loader = dm.train_dataloader()
    assert loader.drop_last and not loader.persistent_workers
    batches = list(loader)
    assert len(batches) == 3 and batches[0][0].shape == (4, 3, 16, 16) and batches[0][1].dtype == torch.int64
    test_batches = list(dm.test_dataloader())
    assert [b[0].shape[0] for b in test_batches] == [5, 4]
    assert torch.cat([b[1] for b in test_batches]).tolist() == [d.label for d in splits.test]

    def order(seed: int) -> list[int]:
        dm = FewShotDataModule(splits.train, splits.test, 16, batch_size=4, num_workers=0, seed=seed, **NORM)
        return [y for _, ys in dm.train_dataloader() for y in ys.tolist()]

    assert order(7) == order(7)
    small = FewShotDataModule(splits.train[:3], splits.test, 16, batch_size=4, num_workers=0, **NORM)
    assert not small.train_dataloader().drop_last and len(list(small.train_dataloader())) == 1
    Path(splits.test[0].path).write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=splits.test[0].path):
        list(dm.test_dataloader())


def _labels_in_order(train: list[Datum], test: list[Datum], num_workers: int) -> list[int]:
    dm = FewShotDataModule(train, test, image_size=16, batch_size=4, num_workers=num_workers, seed=7, **NORM)
    return [y for _, ys in dm.train_dataloader() for y in ys.tolist()]


def test_loader_workers_start_inside_a_joblib_job(tmp_path: Path) -> None:
    """hydra/launcher=local_parallel runs each job in a joblib (loky) worker, whose default start method is
    loky's: the loaders' workers must still start there (trainer=gpu gives them up to 8), and serve the same
    batches in the same order as the main process."""
    from joblib import Parallel, delayed

    build_tree("eurosat", tmp_path, n_classes=3, per_class=(5, 1, 3))
    splits = load_dataset("eurosat", tmp_path)
    expected = _labels_in_order(splits.train, splits.test, num_workers=0)
    job = delayed(_labels_in_order)(splits.train, splits.test, 2)
    assert Parallel(n_jobs=2, backend="loky")([job]) == [expected]


# --- data check ----------------------------------------------------------------------------------


def _expect_tree_sizes(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    info = DATASETS[name]
    monkeypatch.setitem(registry.DATASETS, name, replace(info, n_classes=4, sizes=tree_sizes(name)))


def test_data_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    for name in ("dtd", "fgvc_aircraft", "imagenet_a", "oxford_pets"):
        build_tree(name, tmp_path)
        _expect_tree_sizes(monkeypatch, name)
    assert (
        check_main(["check", "dataset=dtd,fgvc_aircraft", "dataset=imagenet_a", f"data_root={tmp_path}"]) == 0
    )
    out = capsys.readouterr().out
    assert out.count("complete: 4 classes") == 3 and "3 of 3 datasets complete." in out

    (tmp_path / "fgvc_aircraft" / "variants.txt").unlink()
    (tmp_path / "oxford_pets" / "images" / "Abyssinian_1.jpg").unlink()
    monkeypatch.setitem(registry.DATASETS, "dtd", replace(DATASETS["dtd"], sizes=(24, 12, 13)))
    names = "dataset=dtd,fgvc_aircraft,imagenet_a,oxford_pets,caltech101"
    assert check_main(["check", names, f"data_root={tmp_path}"]) == 1
    out = capsys.readouterr().out
    assert "test has 12 images, expected 13" in out
    assert f"missing {tmp_path / 'fgvc_aircraft' / 'variants.txt'}" in out
    assert str(tmp_path / "oxford_pets" / "images" / "Abyssinian_1.jpg") in out
    assert f"no folder {tmp_path / 'caltech-101'}" in out and "split_zhou_Caltech101.json" in out
    assert "1 of 5 datasets complete." in out and "docs/DATASETS.md" in out
    assert check_main(["check", "bogus"]) == 2
    assert check_main(["check", "dataset=nope"]) == 2


def test_data_check_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "PROGRAD_DATA": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "prograd_pl.data", "check", "dataset=ucf101"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"data root: {tmp_path}" in proc.stdout and f"no folder {tmp_path / 'ucf101'}" in proc.stdout
