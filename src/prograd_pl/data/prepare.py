"""``prograd-pl data prepare``: ImageNet from a user's ILSVRC folders, and generated splits where none is published.

``prepare imagenet --from <folder>`` links the ILSVRC-2012 ``train/<wnid>/`` folders into ``imagenet/images/train``,
sorts the validation images into ``images/val/<wnid>/`` (links; from ``val/<wnid>/`` folders, or a flat ``val/``
plus Kaggle's ``LOC_val_solution.csv`` or a ``<file> <wnid>`` list) and writes ``classnames.txt`` with CLIP's
curated names (open_clip's copy of them, in the sorted-wnid order of the 1000 classes).

``prepare <dataset> --make-split`` writes ``split_prograd_<Name>.json`` from the images on disk by the rule in
:mod:`prograd_pl.data.splits`; runs read it with ``dataset.split=generated``.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..atomic import atomic_open
from .base import IMAGE_SUFFIXES, DatasetError, list_dirs, list_images
from .datasets import (
    caltech101,
    dtd,
    eurosat,
    food101,
    imagenet,
    oxford_flowers,
    oxford_pets,
    stanford_cars,
    sun397,
    ucf101,
)
from .splits import generated_name, make_split, split_text

Items = list[tuple[str, str]]  # (path relative to the split's image folder, class name)


# ---- listing the images of each dataset (its upstream layout, the class naming rules of spec §4.3) -----------
def _folders_items(
    image_dir: Path, name_of: Callable[[str], str], ignore: tuple[str, ...] = ()
) -> tuple[Items, list[str]]:
    folders = [f for f in list_dirs(image_dir) if f not in ignore]
    items: Items = []
    for f in folders:
        items.extend((f"{f}/{Path(p).name}", name_of(f)) for p in list_images(image_dir / f))
    return items, [name_of(f) for f in folders]


def _pets(image_dir: Path) -> tuple[Items, list[str]]:
    items = [(Path(p).name, oxford_pets.breed(p)) for p in list_images(image_dir)]
    return items, sorted({n for _, n in items})


def _sun397(image_dir: Path) -> tuple[Items, list[str]]:
    items: Items = []
    categories = []
    for root, dirs, files in os.walk(image_dir):
        dirs.sort()
        images = sorted(f for f in files if f.lower().endswith(IMAGE_SUFFIXES))
        if not images:
            continue
        rel = Path(root).relative_to(image_dir).as_posix()
        name = sun397.classname("/" + rel)
        categories.append(name)
        items.extend((f"{rel}/{f}", name) for f in images)
    return items, categories


def _flowers(dataset_dir: Path, image_dir: Path) -> tuple[Items, list[str]]:
    import json

    import scipy.io

    labels_file, names_file = dataset_dir / "imagelabels.mat", dataset_dir / "cat_to_name.json"
    for f in (labels_file, names_file):
        if not f.is_file():
            raise DatasetError(f"a split of oxford_flowers needs {f} (the labels and the class names).")
    labels = scipy.io.loadmat(labels_file, squeeze_me=True)["labels"]
    names = json.loads(names_file.read_text(encoding="utf-8"))
    classes = [names[str(i)] for i in range(1, len(names) + 1)]
    items = [(f"image_{i + 1:05d}.jpg", classes[int(lab) - 1]) for i, lab in enumerate(labels)
             if (image_dir / f"image_{i + 1:05d}.jpg").is_file()]  # fmt: skip
    return items, classes


def _cars(dataset_dir: Path) -> tuple[Items, list[str]]:
    import scipy.io

    meta = dataset_dir / "devkit" / "cars_meta.mat"
    train = dataset_dir / "devkit" / "cars_train_annos.mat"
    test = dataset_dir / "cars_test_annos_withlabels.mat"
    for f in (meta, train, test):
        if not f.is_file():
            raise DatasetError(f"a split of stanford_cars needs {f} (devkit and test labels).")
    classes = [
        stanford_cars.year_to_front(str(n)) for n in scipy.io.loadmat(meta, squeeze_me=True)["class_names"]
    ]
    items: Items = []
    for annos, folder in ((train, "cars_train"), (test, "cars_test")):
        for a in scipy.io.loadmat(annos, squeeze_me=True)["annotations"]:
            items.append((f"{folder}/{a['fname']}", classes[int(a["class"]) - 1]))
    return items, classes


def listing(name: str, dataset_dir: Path) -> tuple[Items, list[str], str, str]:
    """(items, classes in label order, image folder relative to the dataset folder, paper split file name)."""
    from .base import require_dir

    module = {
        "caltech101": caltech101, "oxford_pets": oxford_pets, "stanford_cars": stanford_cars,
        "oxford_flowers": oxford_flowers, "food101": food101, "sun397": sun397, "dtd": dtd, "eurosat": eurosat,
        "ucf101": ucf101,
    }.get(name)  # fmt: skip
    if module is None:
        raise DatasetError(
            f"dataset {name} needs no generated split: its split is official (folders or list files); "
            "--make-split applies to caltech101, oxford_pets, stanford_cars, oxford_flowers, food101, sun397, dtd, "
            "eurosat, ucf101."
        )
    image_rel = getattr(module, "IMAGE_DIR", "")
    image_dir = require_dir(dataset_dir / image_rel, f"{name} image folder") if image_rel else dataset_dir
    if name == "caltech101":
        items, classes = _folders_items(image_dir, caltech101.classname, caltech101.IGNORED_FOLDERS)
    elif name == "eurosat":
        items, classes = _folders_items(image_dir, lambda f: eurosat.RENAMED.get(f, f))
    elif name in ("dtd", "food101", "ucf101"):
        items, classes = _folders_items(image_dir, lambda f: f)
    elif name == "oxford_pets":
        items, classes = _pets(image_dir)
    elif name == "sun397":
        items, classes = _sun397(image_dir)
    elif name == "oxford_flowers":
        items, classes = _flowers(dataset_dir, image_dir)
    else:
        items, classes = _cars(dataset_dir)
    if not items:
        raise DatasetError(
            f"no images found for {name} under {image_dir}; download it first (prograd-pl data download {name})."
        )
    return items, classes, image_rel, module.SPLIT_FILE


def write_generated_split(name: str, data_root: Path, seed: int = 1) -> Path:
    """Write ``split_prograd_<Name>.json`` for dataset ``name`` under ``data_root``; returns its path."""
    from .registry import get_dataset_info

    dataset_dir = Path(data_root) / get_dataset_info(name).folder
    items, classes, _, paper_file = listing(name, dataset_dir)
    text = split_text(make_split(name, items, classes, seed), name, seed)
    path = dataset_dir / generated_name(paper_file)
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return path


# ---- ImageNet -----------------------------------------------------------------------------------------------
def _find(src: Path, *candidates: str) -> Path | None:
    for c in candidates:
        if (src / c).is_dir():
            return src / c
    return None


def _val_labels(src: Path, val_dir: Path) -> dict[str, str]:
    """File name -> wnid of a flat val folder, from Kaggle's LOC_val_solution.csv or a '<file> <wnid>' list."""
    for path in (src / "LOC_val_solution.csv", val_dir.parent / "LOC_val_solution.csv"):
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as fh:
                return {
                    row["ImageId"] + ".JPEG": row["PredictionString"].split()[0] for row in csv.DictReader(fh)
                }
    for name in ("val_labels.txt", "ILSVRC2012_val_labels.txt", "LOC_synset_val.txt"):
        path = src / name
        if path.is_file():
            pairs = (line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
            return {p[0]: p[1] for p in pairs if len(p) >= 2}
    raise DatasetError(
        f"{val_dir} holds the validation images unsorted; put Kaggle's LOC_val_solution.csv or a val_labels.txt "
        f"('<file> <wnid>' lines) in {src}, or sort them into <wnid>/ folders first."
    )


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        raise DatasetError(f"{link} exists already; remove it to prepare ImageNet again.")
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link, target_is_directory=target.is_dir())


def prepare_imagenet(src: Path, data_root: Path, out: Callable[[str], None] = print) -> Path:
    """Build ``<data_root>/imagenet`` from an ILSVRC-2012 folder (links, no copies); returns the dataset folder."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    src = Path(src).expanduser().absolute()
    train = _find(src, "train", "ILSVRC/Data/CLS-LOC/train")
    val = _find(src, "val", "ILSVRC/Data/CLS-LOC/val")
    if train is None or val is None:
        raise DatasetError(
            f"--from {src} has no train/ and val/ folders (ILSVRC-2012, or Kaggle's ILSVRC/Data/CLS-LOC/)."
        )
    wnids = list_dirs(train)
    if len(wnids) != len(IMAGENET_CLASSNAMES):
        raise DatasetError(
            f"{train} has {len(wnids)} class folders; expected the 1000 <wnid> folders of ILSVRC-2012."
        )
    dest = Path(data_root) / imagenet.FOLDER
    _link(train, dest / "images" / "train")
    val_dirs = list_dirs(val)
    if val_dirs:
        if val_dirs != wnids:
            raise DatasetError(f"the class folders of {val} differ from those of {train}.")
        _link(val, dest / "images" / "val")
    else:
        labels = _val_labels(src, val)
        files = sorted(f for f in os.listdir(val) if f.lower().endswith(IMAGE_SUFFIXES))
        unknown = [f for f in files if labels.get(f) not in set(wnids)]
        if unknown:
            raise DatasetError(f"validation image {val / unknown[0]} has no known class in the label list.")
        for f in files:
            _link(val / f, dest / "images" / "val" / labels[f] / f)
        out(f"sorted {len(files)} validation images into {dest / 'images' / 'val'} (links)")
    with atomic_open(dest / imagenet.CLASSNAMES_FILE, "w") as fh:
        fh.write("".join(f"{w} {n}\n" for w, n in zip(wnids, IMAGENET_CLASSNAMES)))
    out(f"wrote {dest / imagenet.CLASSNAMES_FILE} (CLIP's curated class names)")
    return dest


def main(argv: list[str]) -> int:
    """``prograd-pl data prepare imagenet --from DIR`` | ``prograd-pl data prepare <dataset> --make-split``."""
    import argparse

    from .check import check_dataset
    from .registry import get_dataset_info

    p = argparse.ArgumentParser(
        prog="prograd-pl data prepare",
        description="Build ImageNet's layout from ILSVRC folders (--from), or write a generated split, not the "
        "paper's (--make-split; runs read it with dataset.split=generated).",
    )
    p.add_argument("dataset")
    p.add_argument("--from", dest="source", type=Path, default=None, help="imagenet: the ILSVRC-2012 folder")
    p.add_argument(
        "--make-split", action="store_true", help="write split_prograd_<Name>.json (per class 50/20/30 %%)"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the generated split")
    p.add_argument("--data-root", default=os.environ.get("PROGRAD_DATA") or "data", type=Path)
    args = p.parse_args(argv)
    try:
        if args.make_split:
            path = write_generated_split(args.dataset, args.data_root, args.seed)
            print(f"wrote {path}: a generated split (per class 50/20/30 %, seed {args.seed}), not the paper's; "
                  f"runs read it with dataset.split=generated")  # fmt: skip
            return 0
        if args.dataset != "imagenet" or args.source is None:
            raise DatasetError("expected `data prepare imagenet --from <ILSVRC folder>` or "
                               "`data prepare <dataset> --make-split`.")  # fmt: skip
        dest = prepare_imagenet(args.source, args.data_root)
        ok, report = check_dataset(get_dataset_info("imagenet"), dest.parent.absolute())
        print(f"imagenet: {report}")
        return 0 if ok else 1
    except DatasetError as err:
        print(f"prograd_pl: error: {err}", file=sys.stderr)
        return 1
