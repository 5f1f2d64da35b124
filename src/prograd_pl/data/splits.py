"""Generated train/val/test splits (not the paper's) in the format of CoOp's ``split_zhou_*.json``, and split digests.

The rule is the one of the original code for datasets without an official split: per class, the images are
shuffled and cut into 50 % train, 20 % val and 30 % test (rounded; at least one image in each). The shuffle uses a
private generator seeded from (dataset, seed) only, and the file is written in one fixed serialisation, so the same
images always give the same bytes. The file carries a ``"generated"`` key saying so, and its name says it too:
``split_prograd_<Name>.json`` beside CoOp's ``split_zhou_<Name>.json``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path

from prograd_pl.atomic import file_sha256  # noqa: F401  (its home; the readers import it from here)

from .base import DatasetError

GENERATED_PREFIX = "split_prograd_"
RULE = "per class 50 % train / 20 % val / 30 % test of the images, shuffled with a seeded generator"
FRACTIONS = (0.5, 0.2)  # train, val; test takes the rest


def generated_name(paper_split_file: str) -> str:
    """``split_zhou_DescribableTextures.json`` -> ``split_prograd_DescribableTextures.json``."""
    return GENERATED_PREFIX + paper_split_file.removeprefix("split_zhou_")


def split_rng(dataset: str, seed: int) -> random.Random:
    digest = hashlib.sha256(f"prograd_pl.split|{dataset}|{seed}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def make_split(
    dataset: str, items: Sequence[tuple[str, str]], classes: Sequence[str], seed: int = 1
) -> dict[str, list[list]]:
    """Split ``(relpath, classname)`` items per class (label = index in ``classes``) by :data:`RULE`."""
    label_of = {c: i for i, c in enumerate(classes)}
    groups: dict[str, list[str]] = {c: [] for c in classes}
    for rel, name in items:
        if name not in label_of:
            raise DatasetError(f"{dataset}: image {rel} has class {name!r}, which is not among the classes.")
        groups[name].append(rel)
    rng = split_rng(dataset, seed)
    out: dict[str, list[list]] = {"train": [], "val": [], "test": []}
    for name in classes:
        rels = sorted(groups[name])
        if len(rels) < 3:
            raise DatasetError(
                f"{dataset}: class {name!r} has {len(rels)} image(s); a split needs at least 3 per class "
                "(train, val and test)."
            )
        rng.shuffle(rels)
        n = len(rels)
        n_train = max(1, round(n * FRACTIONS[0]))
        n_val = max(1, round(n * FRACTIONS[1]))
        n_train = min(n_train, n - n_val - 1)
        label = label_of[name]
        for key, part in (("train", rels[:n_train]), ("val", rels[n_train : n_train + n_val]),
                          ("test", rels[n_train + n_val :])):  # fmt: skip
            out[key].extend([rel, label, name] for rel in part)
    return out


def split_text(split: dict[str, list[list]], dataset: str, seed: int, source: str = "") -> str:
    """The file content of a generated split: one fixed serialisation, marked as not the paper's split."""
    marker = {"by": "prograd_pl", "dataset": dataset, "paper_split": False, "rule": RULE, "seed": seed}
    if source:
        marker["source"] = source
    rows = {
        k: ",\n".join(json.dumps(r, ensure_ascii=False) for r in split[k]) for k in ("train", "val", "test")
    }
    body = ",\n".join(f'"{k}": [\n{rows[k]}\n]' if rows[k] else f'"{k}": []' for k in rows)
    return "{\n" + f'"generated": {json.dumps(marker, sort_keys=True)},\n{body}\n' + "}\n"


def is_generated(path: Path) -> bool:
    """Whether a split file was generated (has the ``generated`` marker) rather than published."""
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return '"generated"' in head and '"paper_split": false' in head


def files_sha256(paths: Sequence[Path]) -> str | None:
    """One digest of a split made of several files (FGVC-Aircraft's lists); None if one is missing."""
    if not all(p.is_file() for p in paths):
        return None
    if len(paths) == 1:
        return file_sha256(paths[0])
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.name}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()
