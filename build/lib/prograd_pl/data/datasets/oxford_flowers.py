"""Oxford Flowers-102: ``jpg/image_<n>.jpg`` listed in CoOp's split JSON.

Class names come from ``cat_to_name.json`` and are already final in the split JSON.
"""

from __future__ import annotations

from pathlib import Path

from ..base import DatasetSplits, read_json_dataset

NAME = "oxford_flowers"
FOLDER = "oxford_flowers"
TEMPLATE = "a type of flower, a photo of a {}."
COOP_TEMPLATE = "a photo of a {}, a type of flower."
IMAGE_DIR = "jpg"
SPLIT_FILE = "split_zhou_OxfordFlowers.json"
LAYOUT = (f"{IMAGE_DIR}/", SPLIT_FILE)


def read(dataset_dir: Path) -> DatasetSplits:
    """Read Oxford Flowers from ``dataset_dir`` (the ``oxford_flowers/`` folder)."""
    return read_json_dataset(NAME, TEMPLATE, dataset_dir, IMAGE_DIR, SPLIT_FILE)
