"""Food-101: ``images/<class>/<id>.jpg`` listed in CoOp's split JSON.

Class names are the folder names (``apple_pie``, ...).
"""

from __future__ import annotations

from pathlib import Path

from ..base import DatasetSplits, read_json_dataset

NAME = "food101"
FOLDER = "food-101"
TEMPLATE = "a type of food, a photo of {}."
COOP_TEMPLATE = "a photo of {}, a type of food."
IMAGE_DIR = "images"
SPLIT_FILE = "split_zhou_Food101.json"
LAYOUT = (f"{IMAGE_DIR}/", SPLIT_FILE)


def read(dataset_dir: Path) -> DatasetSplits:
    """Read Food-101 from ``dataset_dir`` (the ``food-101/`` folder)."""
    return read_json_dataset(NAME, TEMPLATE, dataset_dir, IMAGE_DIR, SPLIT_FILE)
