"""ImageNet-A: ``imagenet-a/<wnid>/*`` (test only), a 200-class subset labelled 0..199.

Labels follow the sorted wnid folders; names come from the ImageNet ``classnames.txt`` copy.
"""

from __future__ import annotations

from pathlib import Path

from ..base import DatasetSplits
from .imagenet import CLASSNAMES_FILE, read_wnid_variant

NAME = "imagenet_a"
FOLDER = "imagenet-adversarial"
TEMPLATE = "a photo of a {}."
COOP_TEMPLATE = "a photo of a {}."
IMAGE_DIR = "imagenet-a"
LAYOUT = (f"{IMAGE_DIR}/", CLASSNAMES_FILE)


def read(dataset_dir: Path) -> DatasetSplits:
    """Read ImageNet-A from ``dataset_dir`` (the ``imagenet-adversarial/`` folder)."""
    return read_wnid_variant(NAME, TEMPLATE, dataset_dir, IMAGE_DIR)
