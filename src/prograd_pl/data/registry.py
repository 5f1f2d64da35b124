"""The dataset registry: a plain dict from name to :class:`DatasetInfo`.

Templates and folders live in each reader module (``data/datasets/<name>.py``); the sizes are the
published (train, val, test) counts from CoOp's dataset table (spec §4.1), used by ``data check``.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from .base import DatasetError, DatasetInfo, DatasetSplits
from .datasets import (
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    food101,
    imagenet,
    imagenet_a,
    imagenet_r,
    imagenet_sketch,
    imagenetv2,
    oxford_flowers,
    oxford_pets,
    stanford_cars,
    sun397,
    ucf101,
)
from .datasets.mini import MINI_DATASETS

DOCS = "docs/DATASETS.md"


def _info(module: ModuleType, n_classes: int, sizes: tuple[int, int, int], test_only: bool = False):
    return DatasetInfo(
        name=module.NAME,
        folder=module.FOLDER,
        template=module.TEMPLATE,
        coop_template=module.COOP_TEMPLATE,
        n_classes=n_classes,
        sizes=sizes,
        test_only=test_only,
        reader=module.read,
        layout=module.LAYOUT,
    )


DATASETS: dict[str, DatasetInfo] = {
    "imagenet": _info(imagenet, 1000, (1281167, 0, 50000)),
    "caltech101": _info(caltech101, 100, (4128, 1649, 2465)),
    "oxford_pets": _info(oxford_pets, 37, (2944, 736, 3669)),
    "stanford_cars": _info(stanford_cars, 196, (6509, 1635, 8041)),
    "oxford_flowers": _info(oxford_flowers, 102, (4093, 1633, 2463)),
    "food101": _info(food101, 101, (50500, 20200, 30300)),
    "fgvc_aircraft": _info(fgvc_aircraft, 100, (3334, 3333, 3333)),
    "sun397": _info(sun397, 397, (15880, 3970, 19850)),
    "dtd": _info(dtd, 47, (2820, 1128, 1692)),
    "eurosat": _info(eurosat, 10, (13500, 5400, 8100)),
    "ucf101": _info(ucf101, 101, (7639, 1898, 3783)),
    "imagenetv2": _info(imagenetv2, 1000, (0, 0, 10000), test_only=True),
    "imagenet_sketch": _info(imagenet_sketch, 1000, (0, 0, 50889), test_only=True),
    "imagenet_a": _info(imagenet_a, 200, (0, 0, 7500), test_only=True),
    "imagenet_r": _info(imagenet_r, 200, (0, 0, 30000), test_only=True),
}


def _mini_datasets() -> dict[str, DatasetInfo]:
    return dict(MINI_DATASETS)


def dataset_names(include_mini: bool = False) -> list[str]:
    """Names of the real datasets in the registry's order, then the mini ones if asked for."""
    return [*DATASETS, *(_mini_datasets() if include_mini else {})]


def get_dataset_info(name: str) -> DatasetInfo:
    """The registry entry of ``name`` (real datasets first, then the mini world)."""
    if name in DATASETS:
        return DATASETS[name]
    minis = _mini_datasets()
    if name in minis:
        return minis[name]
    known = ", ".join([*DATASETS, *minis])
    raise DatasetError(f"unknown dataset {name!r}; known datasets: {known}.")


def load_dataset(name: str, data_root: str | Path) -> DatasetSplits:
    """Read dataset ``name`` from ``data_root / <its folder>`` (a mini dataset is generated there on
    first use by its own reader)."""
    info = get_dataset_info(name)
    dataset_dir = Path(data_root).expanduser() / info.folder
    if name in DATASETS and not dataset_dir.is_dir():
        raise DatasetError(
            f"dataset {name!r} not found: expected the folder {dataset_dir} "
            f"(see {DOCS} for its layout and where to download it; set data_root= or $PROGRAD_DATA)."
        )
    return info.reader(dataset_dir)
