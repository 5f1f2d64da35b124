"""UCF101 (middle frames): ``UCF-101-midframes/<Action_Name>/<video>.jpg`` listed in CoOp's split JSON.

Action names are CamelCase split with ``_`` (``ApplyEyeMakeup`` -> ``Apply_Eye_Makeup``); the
image folders and the JSON already use the split names.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..base import DatasetSplits, read_json_dataset

NAME = "ucf101"
FOLDER = "ucf101"
TEMPLATE = "a photo of a person doing {}."
COOP_TEMPLATE = "a photo of a person doing {}."
IMAGE_DIR = "UCF-101-midframes"
SPLIT_FILE = "split_zhou_UCF101.json"
LAYOUT = (f"{IMAGE_DIR}/", SPLIT_FILE)


def split_camel_case(action: str) -> str:
    """``ApplyEyeMakeup`` -> ``Apply_Eye_Makeup``."""
    return "_".join(re.findall(r"[A-Z][^A-Z]*", action)) or action


def read(dataset_dir: Path) -> DatasetSplits:
    """Read UCF101 from ``dataset_dir`` (the ``ucf101/`` folder)."""
    return read_json_dataset(NAME, TEMPLATE, dataset_dir, IMAGE_DIR, SPLIT_FILE)
