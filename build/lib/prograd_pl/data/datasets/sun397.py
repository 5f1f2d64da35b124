"""SUN397: ``SUN397/<letter>/<category>[/<sub>]/<file>.jpg`` listed in CoOp's split JSON.

A category path ``/a/apartment_building/outdoor`` becomes ``outdoor apartment_building``
(sub-parts reversed); the JSON already holds these names.
"""

from __future__ import annotations

from pathlib import Path

from ..base import DatasetSplits, read_json_dataset

NAME = "sun397"
FOLDER = "sun397"
TEMPLATE = "a photo of a {}."
COOP_TEMPLATE = "a photo of a {}."
IMAGE_DIR = "SUN397"
SPLIT_FILE = "split_zhou_SUN397.json"
LAYOUT = (f"{IMAGE_DIR}/", SPLIT_FILE)


def classname(category: str) -> str:
    """``/a/apartment_building/outdoor`` -> ``outdoor apartment_building``."""
    parts = category.strip("/").split("/")[1:]  # drop the leading letter folder
    return " ".join(reversed(parts))


def read(dataset_dir: Path) -> DatasetSplits:
    """Read SUN397 from ``dataset_dir`` (the ``sun397/`` folder)."""
    return read_json_dataset(NAME, TEMPLATE, dataset_dir, IMAGE_DIR, SPLIT_FILE)
