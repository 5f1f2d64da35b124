"""Core data types of the dataset layer and helpers shared by the dataset readers.

A reader turns a dataset folder in CoOp's layout into a :class:`DatasetSplits`: lists of
(absolute image path, 0-based label, final class name). Nothing here imports a framework.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prograd_pl.errors import DatasetError  # noqa: F401  (re-exported)

# Image file endings accepted when a dataset is read from class folders (ImageNet family).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Datum:
    """One labelled image."""

    path: str  # absolute path at run time
    label: int  # 0-based
    classname: str  # final (renamed) class name, '_' kept (prompts replace '_' by ' ')


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the package needs to know about one dataset."""

    name: str
    folder: str  # folder under the data root
    template: str  # ProGrad template (teacher prompt and context init), spec §1.5
    coop_template: str  # CoOp zero-shot template
    n_classes: int
    sizes: tuple[int, int, int] | None  # published (train, val, test) sizes; None: not checked
    test_only: bool  # evaluation-only target (ImageNet variants)
    reader: Callable[[Path], DatasetSplits]  # gets the dataset folder (data_root / folder)
    layout: tuple[str, ...] = ()  # required entries under the folder ("x/" = folder), for `data check`
    kgcoop_template: str | None = None  # KgCoOp's table where it differs from CoOp's (DTD); None: CoOp's


@dataclass
class DatasetSplits:
    """The train/val/test lists of one dataset plus its class names and ProGrad template."""

    name: str  # registry name, e.g. "dtd"
    train: list[Datum]
    val: list[Datum]
    test: list[Datum]
    classnames: list[str]  # index == label
    template: str  # ProGrad template, e.g. "a texture of {}."
    dataset_dir: str | None = None  # folder the few-shot cache paths are relative to (default: data_root/folder)
    fewshot_dir: str | None = None  # folder of the few-shot caches (default: <dataset_dir>/split_fewshot)


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise a DatasetError naming it."""
    if not path.is_file():
        raise DatasetError(f"{what} not found: expected the file {path} (see docs/DATASETS.md).")
    return path


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise a DatasetError naming it."""
    if not path.is_dir():
        raise DatasetError(f"{what} not found: expected the folder {path} (see docs/DATASETS.md).")
    return path


def read_split_json(split_file: Path, image_dir: Path) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Read a CoOp ``split_zhou_*.json`` into (train, val, test) with absolute paths.

    The file maps "train"/"val"/"test" to lists of ``[relpath, label, classname]`` with ``relpath``
    relative to ``image_dir``.
    """
    require_file(split_file, "split file")
    try:
        raw = json.loads(split_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"split file {split_file} is not valid JSON ({err}).") from err
    if not isinstance(raw, dict):
        raise DatasetError(f"split file {split_file} must hold a JSON object with train/val/test lists.")
    out = []
    for key in ("train", "val", "test"):
        if key not in raw:
            raise DatasetError(f"split file {split_file} has no '{key}' list.")
        out.append(entries_to_data(raw[key], image_dir, f"'{key}' of {split_file}"))
    return out[0], out[1], out[2]


def entries_to_data(entries: object, base_dir: Path, where: str) -> list[Datum]:
    """Turn ``[[relpath, label, classname], ...]`` into Datum items under ``base_dir``.

    Relative paths must stay inside ``base_dir`` (no absolute paths, no ``..``).
    """
    if not isinstance(entries, list):
        raise DatasetError(f"{where} must be a list of [relpath, label, classname] entries.")
    base = os.path.abspath(base_dir)
    data = []
    for i, entry in enumerate(entries):
        if not (
            isinstance(entry, (list, tuple))
            and len(entry) == 3
            and isinstance(entry[0], str)
            and isinstance(entry[1], int)
            and not isinstance(entry[1], bool)
            and isinstance(entry[2], str)
        ):
            raise DatasetError(f"entry {i} of {where} is {entry!r}; expected [relpath, label, classname].")
        rel, label, classname = entry
        if os.path.isabs(rel) or ".." in Path(rel).parts or label < 0:
            raise DatasetError(
                f"entry {i} of {where} is {entry!r}; expected a relative path inside {base} and a label >= 0."
            )
        data.append(Datum(os.path.join(base, rel), label, classname))
    return data


def classnames_from(items: Iterable[Datum], where: str) -> list[str]:
    """Class names indexed by label, checking that labels are 0..n-1 and names agree per label."""
    names: dict[int, str] = {}
    for d in items:
        seen = names.setdefault(d.label, d.classname)
        if seen != d.classname:
            raise DatasetError(
                f"{where}: label {d.label} has two class names, {seen!r} and {d.classname!r} ({d.path})."
            )
    if not names:
        raise DatasetError(f"{where}: no images listed.")
    n = max(names) + 1
    missing = [i for i in range(n) if i not in names]
    if missing:
        raise DatasetError(
            f"{where}: labels must be 0..{n - 1} without gaps, but {len(missing)} are absent "
            f"(first: {missing[0]})."
        )
    return [names[i] for i in range(n)]


def check_images_exist(items: Sequence[Datum], where: str) -> None:
    """Raise a DatasetError naming the first listed image that does not exist.

    A folder holding many listed images is listed once with ``os.scandir`` instead of one ``stat``
    per image (fast for splits of tens of thousands of images); a folder with few listed images
    (e.g. a 16-shot subset of ImageNet) is checked per file instead of listing it whole.
    """
    by_folder: dict[str, list[str]] = {}
    for d in items:
        folder, fname = os.path.split(d.path)
        by_folder.setdefault(folder, []).append(fname)
    missing = []
    for folder, fnames in by_folder.items():
        if len(fnames) < 32:
            missing.extend(p for p in (os.path.join(folder, f) for f in fnames) if not os.path.isfile(p))
            continue
        try:
            with os.scandir(folder) as it:
                present = {e.name for e in it}
        except OSError:
            present = set()
        missing.extend(os.path.join(folder, f) for f in fnames if f not in present)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(
            f"{where}: listed image {missing[0]} does not exist{more}; the dataset is incomplete "
            f"(see docs/DATASETS.md)."
        )


def make_splits(
    name: str,
    template: str,
    train: list[Datum],
    val: list[Datum],
    test: list[Datum],
    where: str,
    check_exist: bool = True,
) -> DatasetSplits:
    """Build DatasetSplits, deriving class names from all splits and checking listed images exist."""
    classnames = classnames_from([*train, *val, *test], where)
    if check_exist:
        check_images_exist([*train, *val, *test], where)
    return DatasetSplits(name, train, val, test, classnames, template)


def list_dirs(folder: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``folder``."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def list_images(folder: Path) -> list[str]:
    """Sorted absolute paths of the non-hidden image files directly inside ``folder``."""
    base = os.path.abspath(folder)
    with os.scandir(folder) as it:
        names = sorted(
            e.name
            for e in it
            if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file()
        )
    return [os.path.join(base, n) for n in names]


def read_wnid_classnames(path: Path) -> dict[str, str]:
    """Read an ImageNet ``classnames.txt`` (lines ``<wnid> <name with spaces>``) in file order."""
    require_file(path, "ImageNet class-name file")
    names: dict[str, str] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        line = line.strip()
        if not line:
            continue
        wnid, _, name = line.partition(" ")
        if not name.strip():
            raise DatasetError(f"line {i + 1} of {path} is {line!r}; expected '<wnid> <class name>'.")
        names[wnid] = name.strip()
    return names


def read_json_dataset(
    name: str, template: str, dataset_dir: Path, image_dir: str, split_file: str
) -> DatasetSplits:
    """Read a dataset whose splits come from one of CoOp's ``split_zhou_*.json`` files.

    ``image_dir`` is the folder (relative to ``dataset_dir``; "" for the dataset folder itself)
    that the JSON's relative paths start from.
    """
    dataset_dir = Path(dataset_dir)
    images = dataset_dir / image_dir if image_dir else dataset_dir
    require_dir(images, f"{name} image folder")
    split_path = dataset_dir / split_file
    train, val, test = read_split_json(split_path, images)
    return make_splits(name, template, train, val, test, f"{name} ({split_path})")
