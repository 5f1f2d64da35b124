"""CLIP image transforms of the reference recipe (spec §3.1).  The normalisation is the model's (``Backbone.mean``
and ``std``, from open_clip's preprocessing config: CLIP's constants for the OpenAI models)."""

from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode


def train_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """RandomResizedCrop(size, scale (0.08, 1), bicubic) -> horizontal flip -> tensor -> normalize.

    No resize before the random crop (CoOp's current configs).
    """
    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(0.5),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def test_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Resize the shorter side to ``size`` (bicubic) -> center crop -> tensor -> normalize."""
    return T.Compose(
        [
            T.Resize(size, interpolation=InterpolationMode.BICUBIC),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
