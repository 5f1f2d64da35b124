"""Stanford Cars: ``cars_train/<n>.jpg`` and ``cars_test/<n>.jpg`` listed in CoOp's split JSON.

Unlike the other JSONs, paths are relative to the dataset folder itself. Class names have the
year moved to the front (``2012 Tesla Model S Sedan``); the JSON already holds them.
"""

from __future__ import annotations

from pathlib import Path

from ..base import DatasetSplits, read_json_dataset

NAME = "stanford_cars"
FOLDER = "stanford_cars"
TEMPLATE = "a photo of a {}."
COOP_TEMPLATE = "a photo of a {}."
SPLIT_FILE = "split_zhou_StanfordCars.json"
LAYOUT = ("cars_train/", "cars_test/", SPLIT_FILE)


def year_to_front(devkit_name: str) -> str:
    """``Tesla Model S Sedan 2012`` -> ``2012 Tesla Model S Sedan``."""
    words = devkit_name.split(" ")
    return " ".join([words[-1], *words[:-1]])


def read(dataset_dir: Path) -> DatasetSplits:
    """Read Stanford Cars from ``dataset_dir`` (the ``stanford_cars/`` folder)."""
    return read_json_dataset(NAME, TEMPLATE, dataset_dir, "", SPLIT_FILE)
