"""The dataset registry: a plain dict from name to :class:`DatasetInfo`.

Templates and folders live in each reader module (``data/datasets/<name>.py``); the sizes are the
published (train, val, test) counts from CoOp's dataset table (spec §4.1), used by ``data check``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from .base import DatasetError, DatasetInfo, DatasetSplits
from .datasets import (
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    folder,
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

DOCS = "`prograd-pl data list` / docs/DATASETS.md"


def _info(module: ModuleType, n_classes: int, sizes: tuple[int, int, int], test_only: bool = False):
    return DatasetInfo(
        name=module.NAME,
        folder=module.FOLDER,
        template=module.TEMPLATE,
        coop_template=module.COOP_TEMPLATE,
        kgcoop_template=getattr(module, "KGCOOP_TEMPLATE", None),
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


CUSTOM: dict[str, DatasetInfo] = {
    "folder": DatasetInfo(
        name=folder.NAME, folder=folder.FOLDER, template=folder.TEMPLATE, coop_template=folder.COOP_TEMPLATE,
        n_classes=0, sizes=None, test_only=False, reader=folder.read, layout=folder.LAYOUT,
    ),
}  # fmt: skip
"""Datasets read from a folder the config names (``dataset.path``), not from the data root; never listed."""

SPLIT_CHOICES = ("paper", "generated")


def _mini_datasets() -> dict[str, DatasetInfo]:
    return dict(MINI_DATASETS)


def dataset_names(include_mini: bool = False) -> list[str]:
    """Names of the real datasets in the registry's order, then the mini ones if asked for."""
    return [*DATASETS, *(_mini_datasets() if include_mini else {})]


def get_dataset_info(name: str) -> DatasetInfo:
    """The registry entry of ``name`` (real datasets first, then the mini world, then ``folder``)."""
    if name in DATASETS:
        return DATASETS[name]
    minis = _mini_datasets()
    if name in minis:
        return minis[name]
    if name in CUSTOM:
        return CUSTOM[name]
    known = ", ".join([*DATASETS, *minis, *CUSTOM])
    raise DatasetError(f"unknown dataset {name!r}; known datasets: {known}.")


def _option(options: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    if options is None:
        return default
    value = options.get(key, default)
    return default if value is None else value


def split_file_of(name: str, data_root: str | Path, options: Mapping[str, Any] | None = None) -> list[Path]:
    """The file(s) holding the train/val/test split a run of ``name`` reads ([] when the split is the folders).

    ``options`` is the ``dataset`` config node: ``split`` (paper | generated) picks CoOp's ``split_zhou_*.json``
    or the file ``data prepare <name> --make-split`` writes; ``folder`` takes ``path`` and ``split_file``.
    """
    if name in CUSTOM:
        return [folder.split_path(folder.tree_of(_option(options, "path")), _option(options, "split_file"))]
    info = get_dataset_info(name)
    dataset_dir = Path(data_root).expanduser() / info.folder
    module = _MODULES.get(name)
    choice = str(_option(options, "split", "paper"))
    if choice not in SPLIT_CHOICES:
        raise DatasetError(f"dataset.split={choice} is not one of {', '.join(SPLIT_CHOICES)}.")
    if module is None or not hasattr(module, "SPLIT_FILE"):
        if choice == "generated":
            raise DatasetError(f"dataset {name} has no generated split: its split is official "
                               "(its folders or list files); use dataset.split=paper.")  # fmt: skip
        if name == "fgvc_aircraft":
            return [
                dataset_dir / fgvc_aircraft.VARIANTS_FILE,
                *(dataset_dir / f for f in fgvc_aircraft.SPLIT_FILES.values()),
            ]
        return []
    if choice == "generated":
        from .splits import generated_name

        return [dataset_dir / generated_name(module.SPLIT_FILE)]
    return [dataset_dir / module.SPLIT_FILE]


def split_sha256(name: str, data_root: str | Path, options: Mapping[str, Any] | None = None) -> str | None:
    """SHA-256 of the split a run of ``name`` would read (None: no split file, or not there yet).

    A folder dataset without a split file yet gets the digest of the file its first read will write (the same
    bytes), so the first run and the later ones have one identity.
    """
    from .splits import file_sha256, files_sha256

    if name in MINI_DATASETS:
        return None  # the mini world's version pins its splits
    try:
        paths = split_file_of(name, data_root, options)
    except DatasetError:
        return None
    if name in CUSTOM and paths and not paths[0].is_file():
        import hashlib

        tree = folder.tree_of(_option(options, "path"))
        names = _option(options, "classnames")
        try:
            text = folder.split_content(tree, Path(str(names)).expanduser() if names else None,
                                        int(_option(options, "split_seed", 1)))  # fmt: skip
        except DatasetError:
            return None
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    if not paths:
        return None
    return file_sha256(paths[0]) if len(paths) == 1 and paths[0].is_file() else files_sha256(paths)


def quick_check(name: str, data_root: str | Path, options: Mapping[str, Any] | None = None) -> None:
    """The checks of :func:`load_dataset` that need no listing (the folder, a folder dataset's path, a generated
    split's file), so that a run can report them before it imports and builds anything heavy."""
    if name in CUSTOM:
        folder.tree_of(_option(options, "path"))
        return
    if name not in DATASETS:
        return
    dataset_dir = Path(data_root).expanduser() / get_dataset_info(name).folder
    if not dataset_dir.is_dir():
        load_dataset(name, data_root, options)  # raises its one-sentence error
    if str(_option(options, "split", "paper")) == "generated":
        (path,) = split_file_of(name, data_root, options)
        if not path.is_file():
            load_dataset(name, data_root, options)


def load_dataset(name: str, data_root: str | Path, options: Mapping[str, Any] | None = None) -> DatasetSplits:
    """Read dataset ``name`` from ``data_root / <its folder>`` (a mini dataset is generated there on
    first use by its own reader). ``options`` is the ``dataset`` config node (split choice; ``folder``'s path,
    split file, class names and template)."""
    info = get_dataset_info(name)
    if name in CUSTOM:
        return folder.read(
            folder.tree_of(_option(options, "path")), split_file=_option(options, "split_file"),
            classnames=_option(options, "classnames"), template=str(_option(options, "template", info.template)),
            seed=int(_option(options, "split_seed", 1)),
        )  # fmt: skip
    dataset_dir = Path(data_root).expanduser() / info.folder
    if name in DATASETS and not dataset_dir.is_dir():
        raise DatasetError(
            f"dataset {name!r} not found: expected the folder {dataset_dir} "
            f"(`prograd-pl data download {name}` fetches it; see {DOCS} for its layout; set data_root= or "
            "$PROGRAD_DATA)."
        )
    if str(_option(options, "split", "paper")) == "paper" or name not in DATASETS:
        return info.reader(dataset_dir)
    (path,) = split_file_of(name, data_root, options)
    if not path.is_file():
        raise DatasetError(
            f"dataset.split=generated but {path} does not exist; write it with `prograd-pl data prepare {name} "
            "--make-split`."
        )
    from .base import read_json_dataset
    from .splits import file_sha256

    module = _MODULES[name]
    splits = read_json_dataset(name, info.template, dataset_dir, getattr(module, "IMAGE_DIR", ""), path.name)
    fewshot = dataset_dir / "split_fewshot" / f"{path.stem}-{file_sha256(path)[:10]}"
    return replace(splits, dataset_dir=str(dataset_dir), fewshot_dir=str(fewshot))


_MODULES: dict[str, ModuleType] = {
    m.NAME: m
    for m in (caltech101, dtd, eurosat, fgvc_aircraft, food101, imagenet, imagenet_a, imagenet_r, imagenet_sketch,
              imagenetv2, oxford_flowers, oxford_pets, stanford_cars, sun397, ucf101)
}  # fmt: skip
