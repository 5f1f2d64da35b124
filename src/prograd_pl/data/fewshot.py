"""Few-shot subsets (spec §4.4) with a portable, race-safe cache, and import of CoOp's pickles.

Sampling: the train list is grouped by label (first-appearance order) and ``k`` images are drawn
per class without repetition (all of them when a class has fewer), then ``min(k, 4)`` per class
from val; test is untouched. The RNG is a private ``random.Random`` seeded from a SHA-256 of
(dataset name, k, seed), so the subset depends on nothing else (not on global random state).

Cache: ``<dataset dir>/split_fewshot/shot_{k}-seed_{seed}.json`` holds ``[relpath, label,
classname]`` entries with paths relative to the dataset folder, so a data root can be moved or
shared. It is written atomically (temporary file + ``os.replace``), so parallel sweep jobs can
create the same cache safely. When it exists it is loaded instead of sampling, so all methods of
a sweep see identical subsets; it is bound to the digest of the split it was drawn from and checked against
the dataset (k per class, train images from the train split, no test image, every class), and one that is
damaged, edited or stale is rebuilt with a warning, never trusted. When only a CoOp cache ``shot_{k}-seed_{seed}.pkl`` exists in the
same folder, it is imported (restricted unpickler, paths re-rooted) and written out as the JSON
cache, so runs reuse exactly the subsets of the reference code.
"""

from __future__ import annotations

import contextlib
import copyreg
import hashlib
import json
import logging
import os
import pickle
import random
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..atomic import atomic_open
from .base import DatasetError, DatasetSplits, Datum, check_images_exist, entries_to_data

log = logging.getLogger(__name__)

CACHE_DIR = "split_fewshot"
CACHE_FORMAT = 1
REBUILD_HINT = "delete it to sample the split again"
MAX_VAL_SHOTS = 4


def cache_file(dataset_dir: Path, shots: int, seed: int, suffix: str = ".json") -> Path:
    """Where the few-shot cache of (shots, seed) lives (``suffix=".pkl"``: CoOp's cache)."""
    return Path(dataset_dir) / CACHE_DIR / f"shot_{shots}-seed_{seed}{suffix}"


def sampling_rng(dataset: str, shots: int, seed: int) -> random.Random:
    """A private RNG determined by (dataset, shots, seed) only."""
    digest = hashlib.sha256(f"prograd_pl.fewshot|{dataset}|{shots}|{seed}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def sample_per_class(
    items: Sequence[Datum], k: int, rng: random.Random
) -> tuple[list[Datum], list[tuple[str, int]]]:
    """``k`` items per label (all if fewer), labels in first-appearance order.

    Returns the sample and the (classname, count) of the classes that had fewer than ``k``.
    """
    groups: dict[int, list[Datum]] = {}
    for d in items:
        groups.setdefault(d.label, []).append(d)
    out: list[Datum] = []
    short = []
    for group in groups.values():
        if len(group) >= k:
            out.extend(rng.sample(group, k))
        else:
            out.extend(group)
            short.append((group[0].classname, len(group)))
    return out, short


def _check_shots(shots: object) -> int:
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise DatasetError(f"shots must be an integer >= 1 (images per class), got shots={shots!r}.")
    return shots


def sample_fewshot(splits: DatasetSplits, shots: int, seed: int) -> tuple[list[Datum], list[Datum]]:
    """Draw the few-shot (train, val) lists; warns once if some classes have fewer images."""
    shots = _check_shots(shots)
    rng = sampling_rng(splits.name, shots, seed)
    val_shots = min(shots, MAX_VAL_SHOTS)
    train, short_train = sample_per_class(splits.train, shots, rng)
    val, short_val = sample_per_class(splits.val, val_shots, rng)
    notes = []
    for split, k, short in (("train", shots, short_train), ("val", val_shots, short_val)):
        if short:
            listed = ", ".join(f"{name} ({n})" for name, n in short[:10])
            more = f" and {len(short) - 10} more" if len(short) > 10 else ""
            notes.append(f"{len(short)} {split} classes have fewer than {k} images: {listed}{more}")
    if notes:
        warnings.warn(
            f"few-shot {splits.name} shots={shots}: " + "; ".join(notes) + " (all of their images are used).",
            UserWarning,
            stacklevel=3,
        )
    return train, val


def fewshot_split(
    splits: DatasetSplits, shots: int, seed: int, data_root: Path | None = None
) -> DatasetSplits:
    """The few-shot version of ``splits``: k train / min(k, 4) val images per class, test untouched.

    With ``data_root`` the subset is cached under ``<data_root>/<folder>/split_fewshot/`` (see the
    module docstring) and an existing JSON cache, or else an existing CoOp pickle, is used instead
    of sampling.
    """
    shots = _check_shots(shots)
    if data_root is None:
        train, val = sample_fewshot(splits, shots, seed)
    else:
        from .registry import get_dataset_info  # registry imports the readers; keep this module light

        if splits.dataset_dir is not None:  # a split of its own (generated, or a folder dataset)
            dataset_dir = Path(splits.dataset_dir)
        else:
            dataset_dir = Path(data_root).expanduser() / get_dataset_info(splits.name).folder
        cache_dir = Path(splits.fewshot_dir) if splits.fewshot_dir is not None else dataset_dir / CACHE_DIR
        json_path = cache_dir / cache_file(dataset_dir, shots, seed).name
        pkl_path = cache_dir / cache_file(dataset_dir, shots, seed, ".pkl").name
        cached = None
        if json_path.is_file():
            try:
                cached = load_fewshot_cache(json_path, dataset_dir, splits, shots, seed)
            except DatasetError as err:  # damaged, edited or stale: rebuilt, never trusted
                log.warning("rebuilding the few-shot cache: %s", str(err).replace(f"; {REBUILD_HINT}", ""))
        if cached is not None:
            train, val = cached
        else:
            if pkl_path.is_file():
                log.info("importing CoOp few-shot split %s", pkl_path)
                train, val = import_coop_pickle(pkl_path, dataset_dir, data_root)
                _validate(train, val, splits, shots, str(pkl_path), exact=False)
            else:
                train, val = sample_fewshot(splits, shots, seed)
            try:
                write_fewshot_cache(json_path, dataset_dir, splits.name, shots, seed, train, val,
                                    source_digest(splits, dataset_dir))  # fmt: skip
            except OSError as err:  # e.g. a read-only shared data root: sampling is deterministic anyway
                log.warning(
                    "could not write the few-shot cache %s (%s); continuing without it", json_path, err
                )
    return replace(splits, train=train, val=val, test=list(splits.test), classnames=list(splits.classnames))


def write_fewshot_cache(
    path: Path,
    dataset_dir: Path,
    dataset: str,
    shots: int,
    seed: int,
    train: Sequence[Datum],
    val: Sequence[Datum],
    source: str | None = None,
) -> None:
    """Write the JSON cache atomically; paths are stored relative to ``dataset_dir``. ``source`` is the digest of
    the full split it was drawn from (:func:`source_digest`): a cache of another split is never read back."""
    base = os.path.abspath(dataset_dir)

    def entries(items: Sequence[Datum]) -> str:
        rows = []
        for d in items:
            rel = os.path.relpath(os.path.abspath(d.path), base)
            if rel.startswith(".."):
                raise DatasetError(
                    f"image {d.path} is not inside the dataset folder {base}; cannot cache it."
                )
            rows.append(json.dumps([Path(rel).as_posix(), d.label, d.classname]))
        return "[\n" + ",\n".join(rows) + "\n]" if rows else "[]"

    fields: dict[str, object] = {"format": CACHE_FORMAT, "dataset": dataset, "shots": shots, "seed": seed}
    if source is not None:
        fields["source_sha256"] = source
    head = json.dumps(fields)[:-1]
    text = f'{head},\n"train": {entries(train)},\n"val": {entries(val)}\n}}\n'
    atomic_write_text(path, text)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`prograd_pl.atomic.atomic_open`)."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def load_fewshot_cache(
    path: Path, dataset_dir: Path, splits: DatasetSplits, shots: int, seed: int
) -> tuple[list[Datum], list[Datum]]:
    """Load and validate a JSON cache written by :func:`write_fewshot_cache` (DatasetError when it does not hold
    a valid subset of this very split)."""
    hint = REBUILD_HINT
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"few-shot cache {path} is unreadable or corrupt ({err}); {hint}.") from err
    if not isinstance(raw, dict) or not {"train", "val"} <= raw.keys():
        raise DatasetError(
            f"few-shot cache {path} is corrupt (expected an object with train/val lists); {hint}."
        )
    expected = {"dataset": splits.name, "shots": shots, "seed": seed}
    for key, value in expected.items():
        if key in raw and raw[key] != value:
            raise DatasetError(f"few-shot cache {path} is for {key}={raw[key]!r}, not {value!r}; {hint}.")
    if "source_sha256" in raw and raw["source_sha256"] != source_digest(splits, dataset_dir):
        raise DatasetError(f"few-shot cache {path} was drawn from another version of the dataset's split; {hint}.")
    try:
        train = entries_to_data(raw["train"], dataset_dir, f"'train' of few-shot cache {path}")
        val = entries_to_data(raw["val"], dataset_dir, f"'val' of few-shot cache {path}")
    except DatasetError as err:
        raise DatasetError(f"{err} The cache is corrupt; {hint}.") from err
    _validate(train, val, splits, shots, f"few-shot cache {path}")
    return train, val


def source_digest(splits: DatasetSplits, dataset_dir: Path) -> str:
    """SHA-256 of the full train and val lists a subset is drawn from (paths relative to ``dataset_dir``, so a moved
    data root keeps its caches)."""
    base = os.path.abspath(dataset_dir)
    h = hashlib.sha256(f"prograd_pl.fewshot-source|{splits.name}\n".encode())
    for split, items in (("train", splits.train), ("val", splits.val)):
        h.update(f"[{split}]\n".encode())
        for d in items:
            h.update(f"{os.path.relpath(os.path.abspath(d.path), base)}\t{d.label}\n".encode())
    return h.hexdigest()


def _validate(
    train: list[Datum], val: list[Datum], splits: DatasetSplits, shots: int, where: str, exact: bool = True
) -> None:
    """A subset must be drawn from this very split: the dataset's classes, train images from its train split and
    val images from its val split (never a test image), at most ``min(k, 4)`` val images per class, images on disk;
    with ``exact`` (our own cache) also exactly ``k`` train images per class (all of a class's images when it has
    fewer), every class present. A CoOp pickle is imported as its authors drew it (at most ``k`` per class)."""
    _validate_labels(train, val, splits, shots, where)
    hint = REBUILD_HINT
    test_paths = {os.path.abspath(d.path) for d in splits.test}
    for split, items, source in (("train", train, splits.train), ("val", val, splits.val)):
        allowed = {os.path.abspath(d.path) for d in source}
        seen: set[str] = set()
        for d in items:
            p = os.path.abspath(d.path)
            if p in test_paths and p not in allowed:
                raise DatasetError(f"{where} lists the test image {d.path} among its {split} images; {hint}.")
            if p not in allowed:
                raise DatasetError(f"{where} lists {d.path}, which is not in the dataset's {split} split; {hint}.")
            if p in seen:
                raise DatasetError(f"{where} lists the {split} image {d.path} twice; {hint}.")
            seen.add(p)
    if not exact:
        return
    available: dict[int, int] = {}
    for d in splits.train:
        available[d.label] = available.get(d.label, 0) + 1
    counts: dict[int, int] = {}
    for d in train:
        counts[d.label] = counts.get(d.label, 0) + 1
    for label, n_avail in sorted(available.items()):
        want = min(shots, n_avail)
        if counts.get(label, 0) != want:
            raise DatasetError(f"{where} has {counts.get(label, 0)} train images of class "
                               f"{splits.classnames[label]!r}, expected {want} (shots={shots}); {hint}.")  # fmt: skip


def _validate_labels(train: list[Datum], val: list[Datum], splits: DatasetSplits, shots: int, where: str) -> None:
    """Labels and class names of the dataset, at most k (val: min(k, 4)) per class, images on disk."""
    n = len(splits.classnames)
    for split, items, cap in (("train", train, shots), ("val", val, min(shots, MAX_VAL_SHOTS))):
        counts: dict[int, int] = {}
        for d in items:
            if not 0 <= d.label < n or splits.classnames[d.label] != d.classname:
                expected = repr(splits.classnames[d.label]) if 0 <= d.label < n else f"a label < {n}"
                raise DatasetError(
                    f"{where} does not match dataset {splits.name!r}: {split} image {d.path} has label "
                    f"{d.label} ({d.classname!r}), expected {expected}; delete it to sample the split again."
                )
            counts[d.label] = counts.get(d.label, 0) + 1
        over = [label for label, c in counts.items() if c > cap]
        if over:
            raise DatasetError(
                f"{where} has more than {cap} {split} images for class {splits.classnames[over[0]]!r}; "
                "it does not belong to this shot count."
            )
    check_images_exist([*train, *val], where)


# --- CoOp pickles -----------------------------------------------------------------------------------


class CoopDatum:
    """Plain stand-in for ``dassl.data.datasets.base_dataset.Datum`` (attrs ``_impath``, ``_label``,
    ``_domain``, ``_classname``), so CoOp's pickles can be read without Dassl."""


# The only globals a CoOp few-shot pickle may name.
_ALLOWED_GLOBALS = {
    ("dassl.data.datasets.base_dataset", "Datum"): CoopDatum,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,  # protocols 0/1
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("builtins", "object"): object,
    ("__builtin__", "object"): object,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only Dassl's Datum (mapped to :class:`CoopDatum`) and the helpers plain objects need."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _image_anchors(dataset_dir: Path, data_root: Path | str | None) -> tuple[str, set[str]]:
    """(dataset folder name, first components of its image folders) for re-rooting CoOp paths."""
    from .registry import DATASETS, _mini_datasets

    folder = Path(dataset_dir).name
    if data_root is not None:
        with contextlib.suppress(ValueError):
            folder = Path(os.path.abspath(dataset_dir)).relative_to(os.path.abspath(data_root)).as_posix()
    for info in [*DATASETS.values(), *_mini_datasets().values()]:
        if info.folder == folder:
            return folder, {e.split("/")[0] for e in info.layout if e.endswith("/")}
    return folder, set()


def _reroot(impath: str, dataset_dir: str, folder: str, anchors: set[str]) -> str | None:
    """Map CoOp's absolute ``impath`` onto ``dataset_dir`` by finding the image-folder component."""
    pure = PureWindowsPath(impath) if "\\" in impath and "/" not in impath else PurePosixPath(impath)
    parts = pure.parts
    last = len(parts) - 1  # the file name itself is never an anchor
    folder_parts = tuple(PurePosixPath(folder).parts)
    nf = len(folder_parts)
    starts = [
        i + nf
        for i in range(last - nf, -1, -1)
        if parts[i : i + nf] == folder_parts and i + nf < last and parts[i + nf] in anchors
    ]
    starts += [i for i in range(last - 1, -1, -1) if parts[i] in anchors]
    starts += [i + nf for i in range(last - nf, -1, -1) if parts[i : i + nf] == folder_parts]
    if not starts:
        return None
    return os.path.join(dataset_dir, *parts[starts[0] :])


def import_coop_pickle(
    pkl_path: Path, dataset_dir: Path, data_root: Path | str | None = None
) -> tuple[list[Datum], list[Datum]]:
    """Read CoOp's ``split_fewshot/shot_K-seed_S.pkl`` into (train, val) under ``dataset_dir``.

    Only Dassl's ``Datum`` class is allowed in the pickle (anything else, e.g. ``os.system``, is
    refused). Its absolute paths are re-rooted onto ``dataset_dir`` at the dataset's image folder
    (e.g. ``/old/root/dtd/images/banded/x.jpg`` -> ``<dataset_dir>/images/banded/x.jpg``). ImageNet
    pickles hold only "train"; val is then empty.
    """
    pkl_path = Path(pkl_path)
    try:
        with pkl_path.open("rb") as f:
            raw = _RestrictedUnpickler(f).load()
    except pickle.UnpicklingError as err:
        raise DatasetError(f"CoOp few-shot pickle {pkl_path} was refused or is corrupt: {err}.") from err
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise DatasetError(f"CoOp few-shot pickle {pkl_path} is unreadable ({err!r}).") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("train"), list):
        raise DatasetError(f"CoOp few-shot pickle {pkl_path} must hold a dict with a 'train' list of Datum.")
    folder, anchors = _image_anchors(dataset_dir, data_root)
    base = os.path.abspath(dataset_dir)
    out = []
    for split in ("train", "val"):
        items = []
        for i, obj in enumerate(raw.get(split) or []):
            attrs = getattr(obj, "__dict__", {}) if isinstance(obj, CoopDatum) else {}
            impath, label, classname = attrs.get("_impath"), attrs.get("_label"), attrs.get("_classname")
            if not (isinstance(impath, str) and isinstance(label, int) and isinstance(classname, str)):
                raise DatasetError(
                    f"item {i} of '{split}' in {pkl_path} is not a Dassl Datum with a path and label."
                )
            path = _reroot(impath, base, folder, anchors)
            if path is None:
                raise DatasetError(
                    f"cannot place {impath} (item {i} of '{split}' in {pkl_path}) under {base}: "
                    f"no '{folder}' or image-folder component ({', '.join(sorted(anchors)) or 'none known'})."
                )
            items.append(Datum(path, label, classname))
        out.append(items)
    check_images_exist([*out[0], *out[1]], f"CoOp few-shot pickle {pkl_path}")
    return out[0], out[1]
