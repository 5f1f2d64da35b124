"""Scale-out: one GPU per job of a local parallel sweep (assignment logic on a simulated device list, real lock
files in real processes), a real 2-job joblib sweep, DDP through Lightning on 2 CPU processes against the
single-process run, and a submitit_local sweep found by ``report``."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, small_overrides
from data_trees import build_tree
from omegaconf import OmegaConf

from prograd_pl.app import devices
from prograd_pl.models.checkpoint import CHECKPOINT_NAME


def _cli(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "prograd_pl", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


# ---- GPU assignment ----------------------------------------------------------------------------------------
def test_slot_order_spreads_jobs_over_devices_first():
    assert [d for _, d in devices.slot_order(0, 4)] == [0, 1, 2, 3]
    assert [devices.slot_order(j, 4)[0][1] for j in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    # two jobs per GPU: jobs 0-3 take one slot on each GPU before any GPU gets a second job
    firsts = [devices.slot_order(j, 4, jobs_per_device=2)[0] for j in range(8)]
    assert [d for _, d in firsts] == [0, 1, 2, 3, 0, 1, 2, 3] and len({s for s, _ in firsts}) == 8
    with pytest.raises(ValueError):
        devices.slot_order(0, 0)


def test_claims_never_share_a_slot_and_are_freed(tmp_path):
    held = [devices.claim_device(j, 3, lock_dir=tmp_path) for j in range(3)]
    assert [c.device for c in held] == [0, 1, 2]
    # job 3 would start on GPU 0 (3 % 3) but every slot is taken: nothing, not a shared GPU
    assert devices.claim_device(3, 3, lock_dir=tmp_path) is None
    # job 1 ends while 0 and 2 still run: the next job (4, preferring GPU 1) gets GPU 1 ...
    held[1].release()
    nxt = devices.claim_device(4, 3, lock_dir=tmp_path)
    assert nxt is not None and nxt.device == 1
    # ... and a job preferring a busy GPU takes the free one: job 5 (prefers 2) after job 0 ended
    held[0].release()
    other = devices.claim_device(5, 3, lock_dir=tmp_path)
    assert other is not None and other.device == 0
    two = [devices.claim_device(j, 2, jobs_per_device=2, lock_dir=tmp_path / "two") for j in range(4)]
    assert sorted(c.device for c in two) == [0, 0, 1, 1]
    for c in (held[2], nxt, other, *two):
        c.release()


def _claim_in_process(job: int, lock_dir: str, queue) -> None:
    claim = devices.claim_device(job, 2, lock_dir=lock_dir, wait_s=30.0, poll_s=0.05)
    queue.put((job, claim.device if claim else None))
    import time

    time.sleep(1.0)  # hold the slot while the other process claims


def test_concurrent_processes_get_distinct_gpus(tmp_path):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(j, str(tmp_path), queue)) for j in (0, 2)]  # both prefer 0
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    got = dict(queue.get(timeout=5) for _ in procs)
    assert sorted(got.values()) == [0, 1]


def test_job_devices_only_for_one_gpu_multirun_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv(devices.LOCK_DIR_ENV, str(tmp_path))
    gpu = OmegaConf.create({"trainer": {"accelerator": "gpu", "devices": 1}, "jobs_per_gpu": 1})
    assert devices.job_devices(gpu, n_visible=4, job_num=None) == 1  # a single run: Lightning's choice
    assert devices.job_devices(gpu, n_visible=1, job_num=3) == 1
    assert devices.job_devices(gpu, n_visible=4, job_num=2) == [2]
    assert devices.job_devices(gpu, n_visible=4, job_num=5) == [1]  # the worker's previous slot (2) was released
    cpu = OmegaConf.create({"trainer": {"accelerator": "cpu", "devices": 1}})
    assert devices.job_devices(cpu, n_visible=4, job_num=2) == 1
    ddp = OmegaConf.create({"trainer": {"accelerator": "gpu", "devices": -1}})
    assert devices.job_devices(ddp, n_visible=4, job_num=2) == -1
    devices._held.release()


@pytest.mark.slow
def test_joblib_sweep_runs_two_jobs(tmp_path, monkeypatch):
    build_tree("dtd", tmp_path / "data", n_classes=4, per_class=(4, 2, 3))
    jobs = tmp_path / "jobs.jsonl"
    probe = ["+callbacks.job._target_=scaleout_helpers.RecordJob", f"+callbacks.job.path={jobs}"]
    monkeypatch.setenv(devices.LOCK_DIR_ENV, str(tmp_path / "locks"))  # inherited by the sweep's processes
    proc = _cli(["dataset=dtd", "shots=2", "-m", "seed=1,2", *small_overrides(tmp_path), "threads=1",
                 "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", *probe], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = [json.loads(line) for line in jobs.read_text().splitlines()]
    # two worker processes, jobs 0 and 1, each given its own GPU of a simulated 2-GPU node
    assert sorted(r["job"] for r in seen) == [0, 1] and len({r["pid"] for r in seen}) == 2
    assert sorted(r["gpu"][0] for r in seen) == [0, 1]
    recs = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("results.json")]
    assert sorted(r["seed"] for r in recs) == [1, 2]
    assert all(r["metrics"]["n_test"] == 12 and r["train"]["world_size"] == 1 for r in recs)
    # both jobs ran in joblib's worker processes, not in the launching process
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr


# ---- DDP -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_two_cpu_processes_equal_the_single_process_run(tmp_path):
    # 5 classes x 2 shots = 10 training images: one global batch of 10 (5 per rank); 15 test images, which a
    # distributed sampler would pad to 16
    build_tree("dtd", tmp_path / "data", n_classes=5, per_class=(4, 2, 3))
    common = ["dataset=dtd", "shots=2", *small_overrides(tmp_path), "trainer.max_epochs=3", "threads=1",
              "logger=csv"]  # fmt: skip
    single = _cli([*common, "data.batch_size=10", f"output_root={tmp_path / 'single'}"], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = _cli([*common, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "data.batch_size=5",
                f"output_root={tmp_path / 'ddp'}"], tmp_path)  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    (one,) = (tmp_path / "single").rglob("results.json")
    found = list((tmp_path / "ddp").rglob("results.json"))
    assert len(found) == 1  # written once, by rank 0
    a, b = json.loads(one.read_text()), json.loads(found[0].read_text())
    assert b["train"]["world_size"] == 2 and a["train"]["world_size"] == 1
    assert a["train"]["steps"] == b["train"]["steps"] == 3
    ctx_a = torch.load(one.parent / CHECKPOINT_NAME, weights_only=True)["ctx"]
    ctx_b = torch.load(found[0].parent / CHECKPOINT_NAME, weights_only=True)["ctx"]
    assert torch.allclose(ctx_a, ctx_b, atol=1e-5, rtol=0), (ctx_a - ctx_b).abs().max()
    assert b["metrics"]["n_test"] == 15 and b["metrics"]["acc"] == a["metrics"]["acc"]
    assert b["metrics"]["per_class_acc"] == a["metrics"]["per_class_acc"]
    # the CSV log of the evaluation counts 15 images, not 16 (no padded duplicates): acc is a multiple of 1/15
    assert abs(b["metrics"]["acc"] * 15 / 100 - round(b["metrics"]["acc"] * 15 / 100)) < 1e-4


# ---- submitit ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_submitit_local_sweep_and_report(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4, per_class=(4, 2, 3))
    proc = _cli(["dataset=dtd", "shots=2", "-m", "seed=1,2", *small_overrides(tmp_path), "threads=1",
                 "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("results.json")]
    assert sorted(r["seed"] for r in recs) == [1, 2]
    assert list((tmp_path / "out" / ".hydra" / "multirun").rglob(".submitit"))  # ran through submitit
    report = subprocess.run([sys.executable, "-m", "prograd_pl", "report", str(tmp_path / "out"), "--no-plot"],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    assert "dtd" in report.stdout.lower() and (tmp_path / "out" / "tables" / "fewshot.md").is_file()
