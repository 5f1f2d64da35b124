"""``python -m prograd_pl.data check [dataset=NAME[,NAME...]] [data_root=PATH]``.

Says for each dataset whether it is complete (class count and split sizes as published) or what
is missing, where it is expected and how to obtain it. Exit status 0 when every checked dataset
is complete, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .base import DatasetError
from .fewshot import CACHE_DIR
from .registry import DATASETS, DOCS, DatasetInfo, dataset_names, get_dataset_info

USAGE = "usage: python -m prograd_pl.data check [dataset=NAME[,NAME...]] [data_root=PATH]"

# One line per dataset on where its files come from; docs/DATASETS.md has the details.
SOURCES = {
    "imagenet": "ILSVRC-2012 train/val images (image-net.org), val sorted into <wnid>/ folders, "
    "plus CoOp's classnames.txt",
    "caltech101": "101_ObjectCategories from the Caltech101 page plus CoOp's split_zhou_Caltech101.json",
    "oxford_pets": "images/ and annotations/ from the Oxford-IIIT Pet page plus CoOp's split_zhou_OxfordPets.json",
    "stanford_cars": "cars_train/, cars_test/ (official site or a mirror) plus CoOp's split_zhou_StanfordCars.json",
    "oxford_flowers": "jpg/ from the Oxford 102 Flowers page plus CoOp's split_zhou_OxfordFlowers.json",
    "food101": "images/ from the Food-101 archive plus CoOp's split_zhou_Food101.json",
    "fgvc_aircraft": "the data/ folder of fgvc-aircraft-2013b (images/, images_variant_*.txt, variants.txt)",
    "sun397": "SUN397/ from the SUN database page plus CoOp's split_zhou_SUN397.json",
    "dtd": "images/ from the DTD page (Oxford VGG) plus CoOp's split_zhou_DescribableTextures.json",
    "eurosat": "2750/ from the EuroSAT (RGB) archive plus CoOp's split_zhou_EuroSAT.json",
    "ucf101": "UCF-101-midframes/ (CoOp's middle-frame archive) plus CoOp's split_zhou_UCF101.json",
    "imagenetv2": "imagenetv2-matched-frequency-format-val/ from the ImageNetV2 release plus a copy of "
    "imagenet/classnames.txt",
    "imagenet_sketch": "images/ from the ImageNet-Sketch release plus a copy of imagenet/classnames.txt",
    "imagenet_a": "imagenet-a/ from the ImageNet-A release plus a copy of imagenet/classnames.txt",
    "imagenet_r": "imagenet-r/ from the ImageNet-R release plus a copy of imagenet/classnames.txt",
}


def check_dataset(info: DatasetInfo, data_root: Path) -> tuple[bool, str]:
    """(complete?, one-paragraph report) for one dataset under ``data_root``."""
    dataset_dir = data_root / info.folder
    layout = ", ".join(info.layout) or "its files"
    command = (
        "prograd-pl data prepare imagenet --from <ILSVRC folder>"
        if info.name == "imagenet"
        else f"prograd-pl data download {info.name}"
    )
    how = f"`{command}`, or get it: {SOURCES[info.name]}; see {DOCS}" if info.name in SOURCES else f"see {DOCS}"
    if info.name not in DATASETS and not dataset_dir.exists():
        return False, f"not generated yet: {dataset_dir} (a mini dataset is created on first use)"
    if not dataset_dir.is_dir():
        return False, f"missing: no folder {dataset_dir} (expected {layout} there); {how}"
    absent = [e for e in info.layout if not (dataset_dir / e.rstrip("/")).exists()]
    if absent:
        return False, f"incomplete: missing {', '.join(str(dataset_dir / e) for e in absent)}; {how}"
    try:
        splits = info.reader(dataset_dir)
    except DatasetError as err:
        return False, f"incomplete: {err}" + ("" if DOCS in str(err) else f" ({how})")
    sizes = (len(splits.train), len(splits.val), len(splits.test))
    problems = []
    if len(splits.classnames) != info.n_classes:
        problems.append(f"{len(splits.classnames)} classes, expected {info.n_classes}")
    if info.sizes is not None:
        for split, got, want in zip(("train", "val", "test"), sizes, info.sizes):
            if got != want:
                problems.append(f"{split} has {got} images, expected {want}")
    if problems:
        return False, f"incomplete: {'; '.join(problems)} (in {dataset_dir}); {how}"
    caches = sorted(p.name for p in (dataset_dir / CACHE_DIR).glob("shot_*")) if not info.test_only else []
    note = f", {len(caches)} few-shot cache file(s)" if caches else ""
    counts = f"test {sizes[2]}" if info.test_only else f"train/val/test {sizes[0]}/{sizes[1]}/{sizes[2]}"
    return True, f"complete: {len(splits.classnames)} classes, {counts}{note} ({dataset_dir})"


def main(argv: list[str]) -> int:
    """Run the ``check`` command; returns the exit status."""
    args = list(argv)
    if args and args[0] == "check":
        args = args[1:]
    names: list[str] = []
    data_root = Path(os.environ.get("PROGRAD_DATA") or "data")
    for arg in args:
        key, sep, value = arg.partition("=")
        if arg in ("-h", "--help", "help"):
            print(USAGE)
            return 0
        if not sep or key not in ("dataset", "data_root") or not value:
            print(f"unknown argument {arg!r}\n{USAGE}", file=sys.stderr)
            return 2
        if key == "dataset":
            names.extend(n for n in value.split(",") if n)
        else:
            data_root = Path(value).expanduser()
    try:
        infos = [get_dataset_info(n) for n in (names or dataset_names())]
    except DatasetError as err:
        print(err, file=sys.stderr)
        return 2
    print(f"data root: {data_root.absolute()}")
    width = max(len(i.name) for i in infos)
    n_ok = 0
    for info in infos:
        ok, report = check_dataset(info, data_root.absolute())
        n_ok += ok
        print(f"{info.name:<{width}}  {report}")
    print(f"{n_ok} of {len(infos)} datasets complete." + ("" if n_ok == len(infos) else f" Layouts: {DOCS}."))
    return 0 if n_ok == len(infos) else 1
