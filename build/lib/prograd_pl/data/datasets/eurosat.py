"""EuroSAT (RGB): ``2750/<Class>/<Class>_<n>.jpg`` listed in CoOp's split JSON.

Class folders are renamed to descriptive names (``AnnualCrop`` -> ``Annual Crop Land``); the JSON
already holds them.
"""

from __future__ import annotations

from pathlib import Path

from ..base import DatasetSplits, read_json_dataset

NAME = "eurosat"
FOLDER = "eurosat"
TEMPLATE = "a centered satellite photo of {}."
COOP_TEMPLATE = "a centered satellite photo of {}."
IMAGE_DIR = "2750"
SPLIT_FILE = "split_zhou_EuroSAT.json"
LAYOUT = (f"{IMAGE_DIR}/", SPLIT_FILE)

RENAMED = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


def read(dataset_dir: Path) -> DatasetSplits:
    """Read EuroSAT from ``dataset_dir`` (the ``eurosat/`` folder)."""
    return read_json_dataset(NAME, TEMPLATE, dataset_dir, IMAGE_DIR, SPLIT_FILE)
