"""FGVC-Aircraft (variant level): ``images/<id>.jpg`` with the official split lists.

No JSON: ``images_variant_{train,val,test}.txt`` hold lines ``<id> <variant name>`` and
``variants.txt`` lists the 100 variant names; a label is the line index in ``variants.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..base import DatasetError, DatasetSplits, Datum, make_splits, require_dir, require_file

NAME = "fgvc_aircraft"
FOLDER = "fgvc_aircraft"
TEMPLATE = "a type of aircraft, a photo of a {}."
COOP_TEMPLATE = "a photo of a {}, a type of aircraft."
IMAGE_DIR = "images"
VARIANTS_FILE = "variants.txt"
SPLIT_FILES = {s: f"images_variant_{s}.txt" for s in ("train", "val", "test")}
LAYOUT = (f"{IMAGE_DIR}/", VARIANTS_FILE, *SPLIT_FILES.values())


def read_variants(path: Path) -> list[str]:
    """Variant names in file order (index == label)."""
    require_file(path, "FGVC-Aircraft variant list")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_list(path: Path, image_dir: str, label_of: dict[str, int]) -> list[Datum]:
    require_file(path, "FGVC-Aircraft split list")
    items = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        image_id, _, variant = line.strip().partition(" ")
        if variant not in label_of:
            raise DatasetError(
                f"line {i + 1} of {path} names variant {variant!r}, which is not in {VARIANTS_FILE}."
            )
        items.append(Datum(os.path.join(image_dir, image_id + ".jpg"), label_of[variant], variant))
    return items


def read(dataset_dir: Path) -> DatasetSplits:
    """Read FGVC-Aircraft from ``dataset_dir`` (the ``fgvc_aircraft/`` folder)."""
    dataset_dir = Path(dataset_dir)
    image_dir = os.path.abspath(require_dir(dataset_dir / IMAGE_DIR, "FGVC-Aircraft image folder"))
    variants = read_variants(dataset_dir / VARIANTS_FILE)
    label_of = {name: i for i, name in enumerate(variants)}
    train, val, test = (_read_list(dataset_dir / SPLIT_FILES[s], image_dir, label_of) for s in SPLIT_FILES)
    return make_splits(NAME, TEMPLATE, train, val, test, f"{NAME} ({dataset_dir})")
