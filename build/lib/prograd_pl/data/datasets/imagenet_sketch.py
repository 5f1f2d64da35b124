"""ImageNet-Sketch: ``images/<wnid>/*`` (test only), all 1000 classes.

Labels follow the sorted wnid folders; names come from the ImageNet ``classnames.txt`` copy.
"""

from __future__ import annotations

from pathlib import Path

from ..base import DatasetSplits
from .imagenet import CLASSNAMES_FILE, read_wnid_variant

NAME = "imagenet_sketch"
FOLDER = "imagenet-sketch"
TEMPLATE = "a photo of a {}."
COOP_TEMPLATE = "a photo of a {}."
IMAGE_DIR = "images"
LAYOUT = (f"{IMAGE_DIR}/", CLASSNAMES_FILE)


def read(dataset_dir: Path) -> DatasetSplits:
    """Read ImageNet-Sketch from ``dataset_dir`` (the ``imagenet-sketch/`` folder)."""
    return read_wnid_variant(NAME, TEMPLATE, dataset_dir, IMAGE_DIR)
