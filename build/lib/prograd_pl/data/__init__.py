"""Dataset layer: readers of CoOp's dataset layouts, few-shot sampling and cache, base/new class
splits, CLIP transforms and the Lightning data module (the only part that imports Lightning)."""

from .base import DatasetError, DatasetSplits, Datum

__all__ = ["DatasetError", "DatasetSplits", "Datum"]
