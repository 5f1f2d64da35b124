"""ImageNet-1k: ``images/train/<wnid>/*`` and ``images/val/<wnid>/*`` plus ``classnames.txt``.

A label is the index of the wnid among the sorted train folders; the name comes from
``classnames.txt`` (CLIP's curated names). The val folder is the test split (as in CoOp) and the
val split stays empty. Listings are sorted, so the order does not depend on the filesystem
(CoOp used unsorted ``os.listdir``; a documented deviation).
"""

from __future__ import annotations

from pathlib import Path

from ..base import (
    DatasetError,
    DatasetSplits,
    Datum,
    list_dirs,
    list_images,
    read_wnid_classnames,
    require_dir,
)

NAME = "imagenet"
FOLDER = "imagenet"
TEMPLATE = "a photo of a {}."
COOP_TEMPLATE = "a photo of a {}."
CLASSNAMES_FILE = "classnames.txt"
LAYOUT = ("images/train/", "images/val/", CLASSNAMES_FILE)


def read_class_folders(image_dir: Path, wnids: list[str], names: dict[str, str], where: str) -> list[Datum]:
    """All images of the given class folders, labelled by position in ``wnids``."""
    items = []
    for label, wnid in enumerate(wnids):
        if wnid not in names:
            raise DatasetError(f"{where}: class folder {image_dir / wnid} has no line in {CLASSNAMES_FILE}.")
        images = list_images(image_dir / wnid)
        if not images:
            raise DatasetError(f"{where}: class folder {image_dir / wnid} holds no images; remove it or add its images.")
        items.extend(Datum(p, label, names[wnid]) for p in images)
    return items


def read_wnid_variant(name: str, template: str, dataset_dir: Path, image_dir: str) -> DatasetSplits:
    """Read a test-only variant stored as ``<image_dir>/<wnid>/*`` (Sketch, -A, -R).

    Labels are 0..n-1 over the variant's own sorted wnid folders (a 200-class subset for -A/-R);
    names come from its ``classnames.txt`` copy; files such as ``README.txt`` are ignored.
    """
    dataset_dir = Path(dataset_dir)
    names = read_wnid_classnames(dataset_dir / CLASSNAMES_FILE)
    images = require_dir(dataset_dir / image_dir, f"{name} image folder")
    wnids = list_dirs(images)
    if not wnids:
        raise DatasetError(f"{name} image folder {images} has no <wnid> class folders.")
    test = read_class_folders(images, wnids, names, name)
    return DatasetSplits(name, [], [], test, [names[w] for w in wnids], template)


def read(dataset_dir: Path) -> DatasetSplits:
    """Read ImageNet from ``dataset_dir`` (the ``imagenet/`` folder)."""
    dataset_dir = Path(dataset_dir)
    names = read_wnid_classnames(dataset_dir / CLASSNAMES_FILE)
    train_dir = require_dir(dataset_dir / "images" / "train", "ImageNet train folder")
    val_dir = require_dir(dataset_dir / "images" / "val", "ImageNet val folder")
    wnids = list_dirs(train_dir)
    val_wnids = list_dirs(val_dir)
    if val_wnids != wnids:
        only = sorted(set(wnids) ^ set(val_wnids))
        raise DatasetError(
            f"ImageNet class folders of {train_dir} and {val_dir} differ ({len(only)} not in both, "
            f"e.g. {only[0]}); the val images must be sorted into the same <wnid> folders as the train images."
        )
    if not wnids:
        raise DatasetError(f"ImageNet train folder {train_dir} has no class folders.")
    train = read_class_folders(train_dir, wnids, names, NAME)
    test = read_class_folders(val_dir, wnids, names, NAME)
    return DatasetSplits(NAME, train, [], test, [names[w] for w in wnids], TEMPLATE)
