"""Helpers of the scale-out tests: callbacks that interrupt a run at a given step (an exception, SIGTERM or a
real SIGKILL), and noisy training images (so that the random crops and flips matter)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback
from PIL import Image


class Crash(RuntimeError):
    """Raised by :class:`StopAt` with ``how='raise'``."""


class StopAt(Callback):
    """Interrupt training after global step ``step``: ``raise`` an exception, send ``term`` (SIGTERM) or
    ``kill`` (SIGKILL, nothing runs after it) to the own process."""

    def __init__(self, step: int, how: str = "raise") -> None:
        self.step, self.how = int(step), how

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step:
            return
        if self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.how == "term":
            os.kill(os.getpid(), signal.SIGTERM)
        elif self.how == "int":
            os.kill(os.getpid(), signal.SIGINT)
        else:
            raise Crash(f"stopped at step {self.step}")


def noisy_images(folder: Path, size: int = 24, seed: int = 0) -> int:
    """Overwrite every JPEG under ``folder`` with random noise (one image per file); returns the count."""
    rng = np.random.default_rng(seed)
    files = sorted(folder.rglob("*.jpg"))
    for path in files:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, "JPEG")
    return len(files)


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline W&B run file (``run-<id>.wandb``).

    The file is W&B's LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each with a 7-byte header
    (CRC, little-endian length, type 1 full / 2 first / 3 middle / 4 last). ``wandb.Api`` is online-only, so the
    tests read what a run logged from here.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    block, pos, records, parts = 32768, 7, [], []
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:  # block trailer
            pos += room
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        if kind == 0 and length == 0:
            pos += room
            continue
        if pos + 7 + length > len(data):  # W&B's service process is still appending this chunk: not a record yet
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        parts.append(chunk)
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(b"".join(parts))
            records.append(rec)
            parts = []
    return records


def wandb_run_file(folder: Path, wait_s: float = 60.0) -> Path:
    """The one offline run file under ``folder``, waiting (up to ``wait_s``) for W&B's service process to create it."""
    import time

    deadline = time.monotonic() + wait_s
    found = list(Path(folder).glob("wandb/offline-run-*/run-*.wandb"))
    while not found and time.monotonic() < deadline:
        time.sleep(0.2)
        found = list(Path(folder).glob("wandb/offline-run-*/run-*.wandb"))
    (run_file,) = found
    return run_file


def wandb_run_contents(run_file: Path, wait_s: float = 60.0) -> dict:
    """``{"run": RunRecord, "config": {...}, "history": [{...}], "summary": {...}}`` of an offline run file.

    W&B's service process writes the file after ``run.finish()`` has returned, so this waits (up to ``wait_s``) for
    the run's closing ``exit`` record before reading it.
    """
    import json
    import time

    deadline = time.monotonic() + wait_s
    records = wandb_records(run_file)
    while not any(r.WhichOneof("record_type") == "exit" for r in records) and time.monotonic() < deadline:
        time.sleep(0.2)
        records = wandb_records(run_file)
    out: dict = {"run": None, "config": {}, "history": [], "summary": {}}
    for rec in records:
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = rec.run
            for item in rec.run.config.update:
                out["config"][item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                out["config"][item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for item in rec.summary.update:
                out["summary"][item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
    return out


class RecordJob(Callback):
    """Appends ``{"job", "pid", "gpu"}`` to ``path`` at the start of training: the Hydra job number the device
    assignment sees, the process, and the GPU it would give this job on a simulated node of ``n_gpus`` GPUs."""

    def __init__(self, path: str, n_gpus: int = 2) -> None:
        self.path, self.n_gpus = Path(path), int(n_gpus)

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        import json

        from omegaconf import OmegaConf

        from prograd_pl.app import devices

        job = devices._job_num()
        gpu_cfg = OmegaConf.create({"trainer": {"accelerator": "gpu", "devices": 1}})
        gpu = devices.job_devices(gpu_cfg, n_visible=self.n_gpus, job_num=job)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"job": job, "pid": os.getpid(), "gpu": gpu}) + "\n")
