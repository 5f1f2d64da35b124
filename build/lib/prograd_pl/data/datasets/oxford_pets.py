"""Oxford-IIIT Pets: ``images/<Breed>_<n>.jpg`` listed in CoOp's split JSON.

The breed is the file name without its last ``_`` chunk, lower-cased (``american_bulldog``);
the JSON already holds these names.
"""

from __future__ import annotations

from pathlib import Path

from ..base import DatasetSplits, read_json_dataset

NAME = "oxford_pets"
FOLDER = "oxford_pets"
TEMPLATE = "a type of pet, a photo of a {}."
COOP_TEMPLATE = "a photo of a {}, a type of pet."
IMAGE_DIR = "images"
SPLIT_FILE = "split_zhou_OxfordPets.json"
LAYOUT = (f"{IMAGE_DIR}/", SPLIT_FILE)


def breed(filename: str) -> str:
    """Class name of an image file, e.g. ``American_Bulldog_12.jpg`` -> ``american_bulldog``."""
    stem = Path(filename).stem
    return "_".join(stem.split("_")[:-1]).lower()


def read(dataset_dir: Path) -> DatasetSplits:
    """Read Oxford Pets from ``dataset_dir`` (the ``oxford_pets/`` folder)."""
    return read_json_dataset(NAME, TEMPLATE, dataset_dir, IMAGE_DIR, SPLIT_FILE)
