"""Throughput of the training loader (decode + the recipe's augmentation) against the model's step, on this CPU.

Writes ``--images`` real JPEG files (``--size``, ImageNet-like 500x375 by default, natural-image-like content: smooth
gradients plus noise, quality 90) to a temporary folder, then iterates the project's training loader
(:class:`prograd_pl.data.datamodule.FewShotDataModule`: PIL decode, RandomResizedCrop 224 bicubic, flip,
normalise, batch 32) with 0/2/4/8 worker processes and reports images/s; ``pin_memory`` is timed too where a
GPU is present.  The model's images/s is one of our ProGrad steps (RN50, 100 classes, batch 32) on this machine,
or ``--model-ips`` (e.g. a GPU's, from ``benchmarks/gpu_check.sh``).  Usage:
``python benchmarks/bench_data.py [--workers 0 2 4 8] [--batches 8] [--model-ips N]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BATCH = 32


def write_images(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """``n`` JPEG files whose content compresses like photographs (not flat, not pure noise)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(n):
        freq = rng.uniform(0.005, 0.05, size=3)
        phase = rng.uniform(0, 6.3, size=3)
        img = np.stack([127 + 100 * np.sin(freq[c] * (xx + 0.7 * yy) + phase[c]) for c in range(3)], axis=-1)
        img += rng.normal(0, 18, size=img.shape)
        path = folder / f"img_{i:04d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def loader_ips(paths: list[Path], workers: int, batches: int, pin_memory: bool = False) -> float:
    """Steady-state images/s of the training loader over ``batches`` batches.

    The batches the workers prefetched during start-up (``2 * workers``, DataLoader's default prefetch factor)
    are consumed first, so the timed batches are produced while they are timed.
    """
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from torch.utils.data import DataLoader

    from prograd_pl.data.base import Datum
    from prograd_pl.data.datamodule import FewShotDataModule

    items = [Datum(str(p), i % 10, f"class{i % 10}") for i, p in enumerate(paths)]
    dm = FewShotDataModule(items, items, image_size=224, batch_size=BATCH, num_workers=workers, seed=0,
                           mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)  # fmt: skip
    loader = dm.train_dataloader()
    if pin_memory:
        loader = DataLoader(
            loader.dataset, batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True,
            persistent_workers=workers > 0, pin_memory=True,
        )  # fmt: skip
    it = iter(loader)
    warm = 1 + 2 * workers
    done, t0 = 0, 0.0
    while done < warm + batches:
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            continue
        done += 1
        if done == warm:
            t0 = time.perf_counter()
    ips = batches * BATCH / (time.perf_counter() - t0)
    del it, loader
    return ips


def model_ips(reps: int = 2) -> float:
    """Images/s of our ProGrad step (RN50, 100 classes, batch 32, fp32) on this machine."""
    from steps import build_case, our_step, timed

    case = build_case("RN50-quickgelu", 100, BATCH)
    step = our_step(case, "prograd")
    return BATCH / timed(step, reps, case.device)["s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4, 8])
    parser.add_argument("--batches", type=int, default=8, help="timed batches per setting (default 8)")
    parser.add_argument("--images", type=int, default=320, help="JPEG files to write (default 320)")
    parser.add_argument("--size", type=int, nargs=2, default=[500, 375], metavar=("W", "H"))
    parser.add_argument(
        "--model-ips", type=float, help="the model's images/s (default: measure our CPU step)"
    )
    args = parser.parse_args()

    import torch

    warnings.filterwarnings(
        "ignore", message="This DataLoader will create"
    )  # more workers than cores: intended
    cores = os.cpu_count() or 1
    print(
        f"training-loader throughput: {args.images} JPEGs {args.size[0]}x{args.size[1]}, RandomResizedCrop 224 "
        f"bicubic + flip + normalise, batch {BATCH}; {cores} logical cores; load {os.getloadavg()[0]:.2f}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), args.images, tuple(args.size))
        for w in args.workers:
            rows.append((f"num_workers={w}", loader_ips(paths, w, args.batches)))
            print(f"  {rows[-1][0]:<32} {rows[-1][1]:8.1f} images/s", flush=True)
        if torch.cuda.is_available():
            w = max(args.workers)
            rows.append((f"num_workers={w}, pin_memory", loader_ips(paths, w, args.batches, pin_memory=True)))
            print(f"  {rows[-1][0]:<32} {rows[-1][1]:8.1f} images/s", flush=True)
    # images/s one loading process gives: from the worker settings (workers use one thread each), per core used
    with_workers = [(w, ips) for w, (_, ips) in zip(args.workers, rows) if w > 0]
    if with_workers:
        per_process = max(ips / min(w, cores) for w, ips in with_workers)
    else:
        per_process = rows[0][1]
    need = args.model_ips if args.model_ips else model_ips()
    source = "given" if args.model_ips else "our ProGrad step, RN50 100 classes fp32, this CPU"
    best = max(rows, key=lambda r: r[1])
    print(f"model: {need:.1f} images/s ({source})")
    print(
        f"one loading process: {per_process:.1f} images/s -> workers needed to keep up: "
        f"{math.ceil(need / per_process)} (one process per core at most)"
    )
    print(f"best here: {best[0]} at {best[1]:.1f} images/s = {best[1] / need:.2f}x the model's need")
    for ips in (500, 1000, 2000):
        print(f"  a GPU step at {ips} images/s needs about {math.ceil(ips / per_process)} such processes")


if __name__ == "__main__":
    main()
