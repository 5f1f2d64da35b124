"""Caltech101: ``101_ObjectCategories/<class>/image_<n>.jpg`` listed in CoOp's split JSON.

The JSON already holds the final names; the rules it was built with are kept here for reference
(and for tests that build miniature trees): two folders are dropped and four are renamed.
"""

from __future__ import annotations

from pathlib import Path

from ..base import DatasetSplits, read_json_dataset

NAME = "caltech101"
FOLDER = "caltech-101"
TEMPLATE = "a photo of a {}."
COOP_TEMPLATE = "a photo of a {}."
IMAGE_DIR = "101_ObjectCategories"
SPLIT_FILE = "split_zhou_Caltech101.json"
LAYOUT = (f"{IMAGE_DIR}/", SPLIT_FILE)

IGNORED_FOLDERS = ("BACKGROUND_Google", "Faces_easy")
RENAMED = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


def classname(folder: str) -> str:
    """Final class name of a category folder."""
    return RENAMED.get(folder, folder)


def read(dataset_dir: Path) -> DatasetSplits:
    """Read Caltech101 from ``dataset_dir`` (the ``caltech-101/`` folder)."""
    return read_json_dataset(NAME, TEMPLATE, dataset_dir, IMAGE_DIR, SPLIT_FILE)
