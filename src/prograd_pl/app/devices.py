"""Devices: one GPU per job of a local parallel sweep, and single-process evaluation after a DDP fit.

**GPU assignment.** Under ``hydra/launcher=local_parallel`` every job would see every GPU and land on ``cuda:0``.
Each job instead claims a *slot* (``jobs_per_gpu`` slots per visible GPU) by taking an exclusive ``flock`` on a
node-local lock file; the search starts at the job number, so jobs 0..N-1 of an N-GPU sweep normally get GPUs
0..N-1, and a job that starts while an earlier one still runs never shares its slot. A lock is released when the
worker process starts its next job or exits (also when it is killed), so a crashed job frees its GPU.

**Evaluation after DDP.** Lightning's distributed sampler pads the test set to a multiple of the world size, so
an evaluation spread over ranks counts some images twice. After a DDP fit every rank but 0 leaves, and rank 0
evaluates every test image exactly once on its own device.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

log = logging.getLogger("prograd_pl")

LOCK_DIR_ENV = "PROGRAD_GPU_LOCKS"


@dataclass
class Claim:
    """A held slot: ``device`` (index among the visible GPUs) and the open lock file that holds it."""

    device: int
    slot: int
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1


_held: Claim | None = None


def slot_order(job_num: int, n_devices: int, jobs_per_device: int = 1) -> list[tuple[int, int]]:
    """``(slot, device)`` pairs in the order job ``job_num`` tries them.

    Slot ``s`` lives on device ``s % n_devices`` (consecutive jobs go to different devices before any device takes
    a second job); the search starts at ``job_num % n_slots``.
    """
    if n_devices < 1 or jobs_per_device < 1:
        raise ValueError("n_devices and jobs_per_device must be at least 1")
    n_slots = n_devices * jobs_per_device
    start = job_num % n_slots
    return [((start + i) % n_slots, (start + i) % n_slots % n_devices) for i in range(n_slots)]


def default_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"prograd_pl-gpus-{os.getuid()}")


def claim_device(job_num: int, n_devices: int, jobs_per_device: int = 1, lock_dir: str | Path | None = None,
                 wait_s: float = 0.0, poll_s: float = 0.5) -> Claim | None:  # fmt: skip
    """Take the first free slot for ``job_num`` (see :func:`slot_order`); ``None`` if all stay taken for
    ``wait_s`` seconds. The lock files are named by the visible device list, so sweeps that see other GPUs
    (other ``CUDA_VISIBLE_DEVICES``) do not block each other."""
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all").replace(",", "_") or "none"
    deadline = time.monotonic() + wait_s
    while True:
        for slot, device in slot_order(job_num, n_devices, jobs_per_device):
            fd = os.open(folder / f"gpu-{visible}-dev{device}-slot{slot}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return Claim(device=device, slot=slot, fd=fd)
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_s)


def _job_num() -> int | None:
    """The Hydra job number inside a job of a local parallel (joblib) sweep, else None: jobs of the basic launcher
    run one after the other, and submitit/SLURM jobs see only the GPUs allocated to them."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hc.mode != RunMode.MULTIRUN or "joblib" not in str(hc.launcher.get("_target_", "")).lower():
        return None
    return int(hc.job.num)


def job_devices(cfg: DictConfig, n_visible: int | None = None, job_num: int | None = None) -> Any:
    """``trainer.devices`` for this job: one GPU of its own in a multirun job that asks for one GPU, else the
    configured value.  ``jobs_per_gpu`` (default 1) lets several small jobs share each GPU."""
    devices = cfg.trainer.get("devices", 1)
    if str(cfg.trainer.get("accelerator")) not in ("gpu", "cuda") or devices not in (1, "1"):
        return devices
    job_num = _job_num() if job_num is None else job_num
    n_visible = torch.cuda.device_count() if n_visible is None else n_visible
    if job_num is None or n_visible <= 1:
        return devices
    global _held
    if _held is not None:  # this worker's previous job is over
        _held.release()
        _held = None
    jobs_per_gpu = int(cfg.get("jobs_per_gpu") or 1)
    _held = claim_device(job_num, n_visible, jobs_per_gpu, wait_s=float(cfg.get("gpu_wait_s") or 3600.0))
    if _held is None:
        raise RuntimeError(f"job {job_num}: no free GPU slot among {n_visible} GPUs x {jobs_per_gpu} after waiting; "
                           "lower hydra.launcher.n_jobs or raise jobs_per_gpu.")  # fmt: skip
    log.info("job %d: GPU %d (slot %d of %d)", job_num, _held.device, _held.slot, n_visible * jobs_per_gpu)
    return [_held.device]


def set_math_modes(cfg: DictConfig) -> None:
    """TF32 and cuDNN's autotuner, set explicitly for every run (never left as an earlier run in the process set
    them): ``tf32`` null means on for GPU runs (TF32 matmuls and convolutions, ~8x the fp32 tensor-core rate),
    false full fp32; ``cudnn.benchmark`` is on for GPU runs (the step's shapes are static)."""
    import torch

    on_gpu = str(cfg.trainer.get("accelerator")) in ("gpu", "cuda")
    tf32 = on_gpu if cfg.get("tf32") is None else bool(cfg.tf32)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = on_gpu


def lightning_precision(cfg: DictConfig) -> str:
    """``trainer.precision`` as Lightning's Trainer takes it (``32`` -> ``32-true``)."""
    precision = str(cfg.trainer.get("precision", "32"))
    return "32-true" if precision in ("32", "32-true") else precision
