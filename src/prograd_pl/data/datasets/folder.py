"""Your own images: an ImageFolder tree, ``<class>/<images>`` or ``train|val|test/<class>/<images>``.

Class folders are sorted; a label is the folder's index. Class names are the folder names with ``_`` read as a
space, or come from ``classnames.txt`` (one name per line in the sorted folder order, or ``<folder><TAB><name>``
lines). Images may sit in sub-folders of a class folder.

The split lives in a JSON file of CoOp's format (default ``<tree>/split_prograd.json``). With no such file the
first read writes one: for ``<class>/`` trees the generated split (per class 50 % train / 20 % val / 30 % test,
seeded; see :mod:`prograd_pl.data.splits`), for ``train|val|test/`` trees the folders' own split (``val/`` may be
absent: then val is empty). Few-shot subsets are cached under ``<tree>/split_fewshot/<split name>-<digest>/``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from ...atomic import atomic_open
from ..base import IMAGE_SUFFIXES, DatasetError, DatasetSplits, list_dirs, make_splits, read_split_json
from ..fewshot import CACHE_DIR
from ..splits import file_sha256, make_split, split_text

NAME = "folder"
FOLDER = ""  # the tree is given by dataset.path, not found under the data root
TEMPLATE = "a photo of a {}."
COOP_TEMPLATE = "a photo of a {}."
SPLIT_FILE = "split_prograd.json"
CLASSNAMES_FILE = "classnames.txt"
SPLIT_FOLDERS = ("train", "val", "test")
LAYOUT = ()
log = logging.getLogger("prograd_pl")


def classname_of(folder: str) -> str:
    """A class folder's name as a class name: ``_`` read as a space (``red_fox`` -> ``red fox``)."""
    return " ".join(folder.replace("_", " ").split())


def _images_under(folder: Path) -> list[str]:
    """Sorted POSIX paths (relative to ``folder``) of the non-hidden image files under ``folder``, at any depth."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel_root = Path(root).relative_to(folder)
        out.extend(
            (rel_root / f).as_posix()
            for f in files
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)
        )
    return sorted(out)


def _class_folders(folder: Path) -> list[str]:
    return [d for d in list_dirs(folder) if d != CACHE_DIR]


def read_classnames(path: Path, folders: list[str]) -> list[str]:
    """Class names from ``classnames.txt``: one per line in the sorted folder order, or ``folder<TAB>name``."""
    lines = [ln.rstrip("\n") for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if lines and all("\t" in ln for ln in lines):
        mapping = {f.strip(): n.strip() for f, _, n in (ln.partition("\t") for ln in lines)}
        absent = [f for f in folders if f not in mapping]
        if absent:
            raise DatasetError(
                f"{path} names no class for the folder {absent[0]!r}; expected a '<folder>\\t<name>' line."
            )
        return [mapping[f] for f in folders]
    if len(lines) != len(folders):
        raise DatasetError(
            f"{path} has {len(lines)} class names but the tree has {len(folders)} class folders; expected one name "
            "per line in the sorted order of the folders (or '<folder>\\t<name>' lines)."
        )
    return [ln.strip() for ln in lines]


def scan(tree: Path, classnames_file: Path | None = None) -> tuple[dict[str, list[tuple[str, str]]] | None,
                                                                  list[tuple[str, str]], list[str]]:  # fmt: skip
    """List the tree: (items per split folder or None, all items of a ``<class>/`` tree, class names).

    Items are ``(path relative to the tree, class name)``.
    """
    split_layout = (tree / "train").is_dir() and (tree / "test").is_dir()
    base = tree / "train" if split_layout else tree
    folders = _class_folders(base)
    if not folders:
        raise DatasetError(
            f"dataset.path={tree} has no class folders; expected <class>/<images> or train|val|test/<class>/<images>."
        )
    names_file = classnames_file or (tree / CLASSNAMES_FILE)
    if classnames_file is not None and not classnames_file.is_file():
        raise DatasetError(
            f"dataset.classnames={classnames_file} is not a file; expected one class name per line."
        )
    names = (
        read_classnames(names_file, folders) if names_file.is_file() else [classname_of(f) for f in folders]
    )
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DatasetError(
            f"two class folders of {base} have the class name {dup!r}; class names must differ."
        )
    name_of = dict(zip(folders, names))

    def items_of(root: Path, prefix: str, need_all: bool) -> list[tuple[str, str]]:
        out = []
        present = _class_folders(root)
        unknown = [f for f in present if f not in name_of]
        if unknown:
            raise DatasetError(
                f"class folder {root / unknown[0]} is not a class of {base}; expected the same classes."
            )
        for f in folders if need_all else [f for f in folders if f in present]:
            images = _images_under(root / f) if (root / f).is_dir() else []
            if need_all and not images:
                raise DatasetError(f"class folder {root / f} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
            out.extend((f"{prefix}{f}/{rel}", name_of[f]) for rel in images)
        return out

    if split_layout:
        per_split = {
            "train": items_of(tree / "train", "train/", True),
            "test": items_of(tree / "test", "test/", False),
        }
        per_split["val"] = items_of(tree / "val", "val/", False) if (tree / "val").is_dir() else []
        return per_split, [], names
    return None, items_of(tree, "", True), names


def split_content(tree: Path, classnames_file: Path | None = None, seed: int = 1) -> str:
    """The split file a tree gets when it has none (deterministic: same tree, same bytes)."""
    per_split, items, names = scan(tree, classnames_file)
    if per_split is None:
        return split_text(make_split(NAME, items, names, seed), NAME, seed)
    label = {n: i for i, n in enumerate(names)}
    split = {k: [[rel, label[n], n] for rel, n in per_split[k]] for k in ("train", "val", "test")}
    return split_text(split, NAME, seed, source="the tree's train/val/test folders")


def split_path(tree: Path, split_file: str | Path | None) -> Path:
    return Path(split_file).expanduser() if split_file else tree / SPLIT_FILE


def tree_of(path: str | Path | None) -> Path:
    """``dataset.path`` as a folder, or one sentence saying what is expected."""
    if path in (None, "", "???"):
        raise DatasetError("dataset=folder needs dataset.path=<folder of your images> (<class>/<images> or "
                           "train|val|test/<class>/<images>).")  # fmt: skip
    tree = Path(str(path)).expanduser().absolute()
    if not tree.is_dir():
        raise DatasetError(
            f"dataset.path={path} is not a folder; expected <class>/<images> or train|val|test/<class>/<images>."
        )
    return tree


def read(
    dataset_dir: Path,
    split_file: str | Path | None = None,
    classnames: str | Path | None = None,
    template: str = TEMPLATE,
    seed: int = 1,
) -> DatasetSplits:
    """Read the tree ``dataset_dir``; writes its split file first if it has none (and says where, in one line)."""
    tree = tree_of(dataset_dir)
    sp = split_path(tree, split_file)
    if not sp.is_file():
        text = split_content(tree, Path(classnames).expanduser() if classnames else None, seed)
        try:
            with atomic_open(sp, "w") as fh:
                fh.write(text)
        except OSError as err:
            raise DatasetError(
                f"cannot write the split file {sp} ({err.strerror or err}); pass dataset.split_file=<a writable "
                "path> or make the tree writable."
            ) from None
        log.warning("dataset=folder: no split file, wrote one (per class 50/20/30 %% or the tree's "
                    "train/val/test folders, seed %d) to %s", seed, sp)  # fmt: skip
    train, val, test = read_split_json(sp, tree)
    splits = make_splits(NAME, template, train, val, test, f"{NAME} ({sp})")
    fewshot = tree / CACHE_DIR / f"{sp.stem}-{file_sha256(sp)[:10]}"
    return replace(splits, dataset_dir=str(tree), fewshot_dir=str(fewshot))
