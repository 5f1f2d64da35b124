"""Base-to-new class splits (spec §4.5): train on the first half of the classes, test on the rest."""

from __future__ import annotations

import math

from .base import DatasetError, DatasetSplits, Datum

SUBSAMPLES = ("all", "base", "new")


def base_class_count(n_classes: int) -> int:
    """How many of ``n_classes`` (sorted) labels are base classes: the first ``ceil(n/2)``."""
    return math.ceil(n_classes / 2)


def subsample_classes(splits: DatasetSplits, which: str) -> DatasetSplits:
    """Keep the base (first ``ceil(n/2)`` labels) or new (remaining) classes, relabelled ``0..``.

    Labels are the sorted set of train labels; train, val and test are filtered alike. Apply it
    after few-shot sampling (the subset then matches the reference code). ``"all"`` returns
    ``splits`` unchanged; otherwise the name gets a ``-base``/``-new`` suffix.
    """
    if which not in SUBSAMPLES:
        raise DatasetError(f"subsample must be one of {', '.join(SUBSAMPLES)}, got {which!r}.")
    if which == "all":
        return splits
    labels = sorted({d.label for d in splits.train})
    if len(labels) < 2:
        raise DatasetError(
            f"dataset {splits.name!r} has {len(labels)} class(es) in train; base/new needs at least 2."
        )
    m = base_class_count(len(labels))
    kept = labels[:m] if which == "base" else labels[m:]
    relabel = {old: new for new, old in enumerate(kept)}

    def keep(items: list[Datum]) -> list[Datum]:
        return [Datum(d.path, relabel[d.label], d.classname) for d in items if d.label in relabel]

    return DatasetSplits(
        name=f"{splits.name}-{which}",
        train=keep(splits.train),
        val=keep(splits.val),
        test=keep(splits.test),
        classnames=[splits.classnames[old] for old in kept],
        template=splits.template,
    )
