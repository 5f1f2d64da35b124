"""Lightning data module over few-shot train / test lists (the only Lightning import in ``data``)."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .base import DatasetError, Datum
from .transforms import test_transform, train_transform

log = logging.getLogger("prograd_pl")


class ImageList(Dataset):
    """Images of a list of Datum, opened with PIL as RGB; yields ``(image tensor, label)``."""

    def __init__(self, items: Sequence[Datum], transform: Callable):
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        d = self.items[index]
        try:
            with Image.open(d.path) as im:
                image = im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise DatasetError(
                f"cannot read image {d.path} ({err}); the file is missing or corrupt."
            ) from err
        return self.transform(image), d.label


def worker_context() -> multiprocessing.context.BaseContext:
    """The platform's own start method for loader workers (fork on Linux, spawn on macOS), named explicitly.

    A job of ``hydra/launcher=local_parallel`` runs in a joblib (loky) worker, whose default start method is
    loky's; a DataLoader left on the default there fails to start its workers ("'Process' object has no
    attribute 'env'", which Lightning then reports as "Please call `iter(combined_loader)` first").
    """
    return multiprocessing.get_context(multiprocessing.get_all_start_methods()[0])


class TrainLoader(DataLoader):
    """The train loader. ``drop_last`` drops an incomplete last batch only when the list fills a batch; under DDP
    Lightning rebuilds the loader with a ``DistributedSampler`` (one share of the list per process), and the same
    rule is applied to each process's share: a batch larger than the share trains on one batch of the share (as
    one process trains on one batch of the whole list when the batch is larger than it), with one warning, instead
    of dropping every batch and training nothing."""

    def __init__(self, dataset: Dataset, *args: Any, batch_size: int | None = 1, drop_last: bool = False,
                 sampler: Any = None, **kwargs: Any) -> None:  # fmt: skip
        if isinstance(sampler, DistributedSampler) and drop_last and batch_size and len(sampler) < batch_size:
            drop_last = False
            if sampler.rank == 0:
                log.warning("data.batch_size=%d is larger than each of the %d processes' share of the %d training "
                            "images (%d); each process trains on one batch of its %d per step", batch_size,
                            sampler.num_replicas, len(dataset), len(sampler), len(sampler))  # fmt: skip
        super().__init__(dataset, *args, batch_size=batch_size, drop_last=drop_last, sampler=sampler, **kwargs)


class FewShotDataModule(L.LightningDataModule):
    """Train loader: shuffled batches seeded by ``seed``, ``drop_last`` when the list fills a batch.
    Test loader: sequential batches. There is no val loader (the recipe never evaluates val)."""

    def __init__(
        self,
        train: list[Datum],
        test: list[Datum],
        image_size: int = 224,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int = 32,
        test_batch_size: int = 100,
        num_workers: int = 2,
        seed: int = 0,
        pin_memory: bool = False,
    ):
        super().__init__()
        self.train_items = list(train)
        self.test_items = list(test)
        self.image_size = image_size
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.batch_size = batch_size
        self.test_batch_size = test_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.pin_memory = pin_memory  # page-locked batches for faster host-to-GPU copies
        # One generator for the whole run: each epoch continues its sequence of permutations.
        self.generator = torch.Generator().manual_seed(seed)

    def _loader(self, dataset: Dataset, batch_size: int, loader_class: type[DataLoader] = DataLoader,
                **kwargs) -> DataLoader:  # fmt: skip
        return loader_class(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            multiprocessing_context=worker_context() if self.num_workers > 0 else None,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        if not self.train_items:
            raise DatasetError("the train list is empty; this dataset/setting has no training images.")
        dataset = ImageList(self.train_items, train_transform(self.image_size, self.mean, self.std))
        return self._loader(
            dataset,
            self.batch_size,
            loader_class=TrainLoader,
            shuffle=True,
            generator=self.generator,
            drop_last=len(self.train_items) >= self.batch_size,
        )

    def test_dataloader(self) -> DataLoader:
        if not self.test_items:
            raise DatasetError("the test list is empty; nothing to evaluate.")
        dataset = ImageList(self.test_items, test_transform(self.image_size, self.mean, self.std))
        return self._loader(dataset, self.test_batch_size, shuffle=False)
