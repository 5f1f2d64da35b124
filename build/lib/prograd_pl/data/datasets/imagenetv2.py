"""ImageNetV2 (matched frequency): ``imagenetv2-matched-frequency-format-val/<i>/*`` (test only).

Folder ``i`` (0..999, numeric) is ImageNet class ``i``, i.e. the i-th line of ``classnames.txt``.
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

NAME = "imagenetv2"
FOLDER = "imagenetv2"
TEMPLATE = "a photo of a {}."
COOP_TEMPLATE = "a photo of a {}."
IMAGE_DIR = "imagenetv2-matched-frequency-format-val"
CLASSNAMES_FILE = "classnames.txt"
LAYOUT = (f"{IMAGE_DIR}/", CLASSNAMES_FILE)


def read(dataset_dir: Path) -> DatasetSplits:
    """Read ImageNetV2 from ``dataset_dir`` (the ``imagenetv2/`` folder)."""
    dataset_dir = Path(dataset_dir)
    names = list(read_wnid_classnames(dataset_dir / CLASSNAMES_FILE).values())
    image_dir = require_dir(dataset_dir / IMAGE_DIR, "ImageNetV2 image folder")
    folders = list_dirs(image_dir)
    bad = [f for f in folders if not f.isdigit()]
    if bad:
        raise DatasetError(f"ImageNetV2 folder {image_dir / bad[0]} is not a class index (expected 0..999).")
    n = len(folders)
    labels = sorted(int(f) for f in folders)
    if labels != list(range(n)) or n > len(names):
        raise DatasetError(
            f"ImageNetV2 folder {image_dir} must hold class folders 0..{n - 1} "
            f"(and {dataset_dir / CLASSNAMES_FILE} at least {n} lines); found {n} folders and {len(names)} names."
        )
    test = [Datum(p, i, names[i]) for i in range(n) for p in list_images(image_dir / str(i))]
    return DatasetSplits(NAME, [], [], test, names[:n], TEMPLATE)
