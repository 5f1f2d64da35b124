"""Describable Textures (DTD): ``images/<class>/<file>.jpg`` listed in CoOp's split JSON.

Class names are the folder names (``banded``, ``bubbly``, ...).
"""

from __future__ import annotations

from pathlib import Path

from ..base import DatasetSplits, read_json_dataset

NAME = "dtd"
FOLDER = "dtd"
TEMPLATE = "a texture of {}."
COOP_TEMPLATE = "{} texture."
KGCOOP_TEMPLATE = "a photo of a {}, a type of texture."  # KgCoOp's trainer table; CoOp's for the others
IMAGE_DIR = "images"
SPLIT_FILE = "split_zhou_DescribableTextures.json"
LAYOUT = (f"{IMAGE_DIR}/", SPLIT_FILE)


def read(dataset_dir: Path) -> DatasetSplits:
    """Read DTD from ``dataset_dir`` (the ``dtd/`` folder)."""
    return read_json_dataset(NAME, TEMPLATE, dataset_dir, IMAGE_DIR, SPLIT_FILE)
