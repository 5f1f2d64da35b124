"""Reliability, third round (issue 25): multiruns checked before Hydra starts, free space against what a run
writes, DDP batches larger than a rank's share, and the grace period of a run hung inside C code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, compose, small_overrides
from data_trees import build_tree
from omegaconf import OmegaConf

from prograd_pl.errors import USER_ERRORS

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "tests")}


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")) if root.exists() else []


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def prograd(*args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prograd_pl", *args], env=env or ENV, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


# ---- 1. multiruns are checked before Hydra starts ---------------------------------------------------------------
SWEEP_REFUSALS = [
    (["-m", "seed=abc,-1"], [r"got seed='abc'\.$", r"got seed=-1\.$"]),
    (["-m", "dataset=nosuch,dtd"], [r"^dataset=nosuch is not a config of dataset; expected one of .*dtd"]),
    (["-m", "seed=1,2", "trainer.devices=0"], [r"^trainer.devices=0 with trainer.accelerator=cpu"]),
    (["-m", "foo=1,2"], [r"^Could not override 'foo'"]),
    (["-m", "seed=a,b,c,d"], [r"got seed='a'", r"got seed='b'",
                              r"^2 more job\(s\) of the sweep fail on their config for 2 other reason\(s\), the first "
                              r"of them seed=c\.$"]),
    (["-m", "seed=1,abc", "continue_on_error=false"],
     [r"got seed='abc'; continue_on_error=false stops the sweep at its first failed job, so none was started\.$"]),
    (["hydra.mode=MULTIRUN", "seed=abc,-2"], [r"got seed='abc'", r"got seed=-2"]),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "messages"), SWEEP_REFUSALS, ids=[" ".join(c[0])[:40] for c in SWEEP_REFUSALS])
def test_a_sweep_that_cannot_run_is_refused_with_one_sentence_per_problem(tmp_path, capsys, monkeypatch, extra,
                                                                          messages):  # fmt: skip
    from prograd_pl.__main__ import cli

    build_tree("dtd", tmp_path / "data", n_classes=4)
    monkeypatch.setattr(sys, "argv", ["prograd_pl"])
    rc = cli([*small_overrides(tmp_path, "dataset=dtd", "shots=1"), *extra])
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert rc == 1 and len(lines) == len(messages) and "Traceback" not in err, err
    for line, message in zip(lines, messages):
        assert line.startswith("prograd_pl: error: ") and re.search(message, line.removeprefix("prograd_pl: error: ")), line
    assert files_under(tmp_path / "out") == [] and files_under(tmp_path / "cache") == []  # no .hydra/multirun


def test_an_unknown_config_in_a_sweep_is_one_sentence_from_the_command_line(tmp_path):
    proc = prograd(*small_overrides(tmp_path), "-m", "dataset=mini_colors,nosuch", "seed=1,2")
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("prograd_pl: error: dataset=nosuch is not a config of dataset; expected one of")
    assert files_under(tmp_path) == []


def test_a_sweep_with_a_valid_job_runs_it_and_names_the_bad_one(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    proc = prograd("-m", "seed=1,abc", "dataset=dtd", "shots=1", *small_overrides(tmp_path), timeout=600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "1 job(s) of the sweep failed (the 1 other(s) ran" in proc.stderr
    assert re.search(r"job 1 \(seed=abc [^)]*\): seed must be an integer >= 0 .*got seed='abc'", proc.stderr), proc.stderr
    (result,) = (tmp_path / "out").rglob("results.json")
    assert "seed1" in str(result)
    (marker,) = (tmp_path / "out").rglob("FAILED")  # in the sweep's own folder ...
    assert marker.parent.parent.parent.name == "multirun" and marker.parent.name == "1"
    assert not [p for p in files_under(tmp_path / "out") if "seedabc" in str(p)]  # ... never under a run folder


def test_a_sweep_whose_jobs_pass_the_checks_but_fail_while_running_ends_with_its_summary(tmp_path):
    # every job fails on its config: refused before Hydra (above); every job fails later (a damaged test image):
    # the sweep ran, and its summary says that none ran
    import json

    build_tree("dtd", tmp_path / "data", n_classes=4)
    split = json.loads(next((tmp_path / "data" / "dtd").glob("split_zhou_*.json")).read_text())
    (tmp_path / "data" / "dtd" / "images" / split["test"][0][0]).write_bytes(b"not an image")
    proc = prograd("-m", "seed=1", "dataset=dtd", "shots=1", "method=zeroshot", *small_overrides(tmp_path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "1 job(s) of the sweep failed (none ran;" in proc.stderr and "cannot read image" in proc.stderr
    assert "sweep: 1 job: 0 ran, 0 skipped (finished before), 1 failed" in proc.stdout


def test_hydra_flags_still_print_without_a_run_or_a_check(tmp_path):
    # (Hydra itself refuses --cfg together with -m: these flags are never a multirun)
    proc = prograd(*small_overrides(tmp_path), "seed=abc", "--cfg", "job")
    assert proc.returncode == 0 and "seed: abc" in proc.stdout and "prograd_pl: error" not in proc.stderr, proc.stderr
    assert files_under(tmp_path) == []


def test_the_sweep_is_expanded_as_hydras_basic_sweeper_does():
    from prograd_pl.app.config import compose
    from prograd_pl.app.precheck import JobComposer, _hydra_initialized, expand_sweep

    with _hydra_initialized():
        # the experiment's hydra.sweeper.params, then the command line (which replaces the experiment's seeds)
        plan = expand_sweep(["experiment=mini_demo", "seed=1", "model=tiny"])
        assert plan.local and plan.jobs == [
            ["dataset=mini_scenes", "seed=1", "method=coop", "experiment=mini_demo", "model=tiny"],
            ["dataset=mini_scenes", "seed=1", "method=prograd", "experiment=mini_demo", "model=tiny"],
        ]
        assert len(expand_sweep(["shots=range(1,3)", "seed=1,2,3", "method=coop,prograd"]).jobs) == 12
        composer = JobComposer(["hydra.sweep.dir=/sweeps"])
        for job in (["experiment=mini_demo", "seed=3", "method=coop", "method.prompt.n_ctx=4", "model=tiny",
                     "+callbacks.x._target_=a.B"], ["seed=2", "++threads=1", "~ckpt_classes"], ["seed=5"]):
            assert OmegaConf.to_yaml(composer.compose(job)) == OmegaConf.to_yaml(compose(["hydra.sweep.dir=/sweeps", *job]))
        assert len(composer.bases) == 2  # the defaults list composed once per set of config-group choices


# ---- 2. free space against what a run writes ---------------------------------------------------------------------
def test_expected_sizes_follow_what_a_run_learns_and_evaluates(tmp_path):
    from prograd_pl.app import precheck as pc

    dims = pc.ModelDims(embed_dim=32, text_width=32)  # prograd-tiny
    coop = compose(small_overrides(tmp_path, "dataset=dtd", "method=coop"))
    csc = compose(small_overrides(tmp_path, "dataset=dtd", "method=coop", "method.prompt.csc=true"))
    assert pc.model_dims("prograd-tiny") == dims
    assert pc.learned_floats(coop, 47, dims) == 16 * 32 and pc.learned_floats(csc, 47, dims) == 47 * 16 * 32
    assert pc.learned_floats(compose(small_overrides(tmp_path, "method=zeroshot")), 47, dims) == 0
    assert pc.learned_floats(compose(small_overrides(tmp_path, "trainer.max_epochs=0")), 47, dims) == 0
    cocoop = compose(small_overrides(tmp_path, "method=cocoop"))
    assert pc.learned_floats(cocoop, 47, dims) == 4 * 32 + 32 * 2 + 2 + 2 * 32 + 32  # context + meta-net (32/16)
    extra = pc.expected_run_bytes(csc, 47, 0, dims) - pc.expected_run_bytes(coop, 47, 0, dims)
    # the trained context once, last.ckpt (tensors + 2 optimiser slots) twice while it is replaced
    assert extra == 4 * 46 * 16 * 32 * (1 + 2 * (1 + pc.OPTIMIZER_SLOTS))
    assert pc.expected_run_bytes(coop, 47, 2, dims) - pc.expected_run_bytes(coop, 47, 0, dims) == 2 * pc.RESULT_BYTES
    assert pc.expected_cache_bytes(1692, dims) == 1692 * (32 * 4 + 8) + pc.CACHE_ENTRY_OVERHEAD_BYTES
    need = pc.disk_needs(compose(small_overrides(tmp_path, "dataset=dtd", "eval_datasets=eurosat")))
    assert need.output_root == str(tmp_path / "out") and need.cache_root == str(tmp_path / "cache")
    assert sorted(k[0] for k in need.cache) == ["dtd", "eurosat"]
    assert sum(need.cache.values()) == pc.expected_cache_bytes(1692, dims) + pc.expected_cache_bytes(8100, dims)


def _fake_disk(monkeypatch, free_of):
    """``shutil.disk_usage`` reporting ``free_of(path)`` free bytes (None: the real figure)."""
    real = shutil.disk_usage

    def disk_usage(path):
        usage = real(path)
        free = free_of(str(path))
        return usage if free is None else usage._replace(free=free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)


def test_check_free_space_names_the_folder_the_free_space_and_the_need(tmp_path, monkeypatch):
    from prograd_pl.app import precheck as pc

    (tmp_path / "cache").mkdir()
    runs = [pc.DiskNeed(str(tmp_path / "out"), 10 << 20, str(tmp_path / "cache"), {("dtd",): 3 << 20}),
            pc.DiskNeed(str(tmp_path / "out"), 10 << 20, str(tmp_path / "cache"), {("dtd",): 3 << 20})]  # fmt: skip
    _fake_disk(monkeypatch, lambda path: 23 << 20)
    pc.check_free_space(runs)  # 2 runs of 10 MiB and one shared cache entry of 3 MiB: 23 MiB
    _fake_disk(monkeypatch, lambda path: 20 << 20)
    with pytest.raises(USER_ERRORS, match=re.escape(
            f"output_root={tmp_path / 'out'} has 20.0 MiB free on its file system; the sweep's 2 runs write up to "
            f"23.0 MiB there (results, checkpoints and logs, and the feature cache of cache_root={tmp_path / 'cache'})"
            "; expected at least 23.0 MiB free.")):  # fmt: skip
        pc.check_free_space(runs)
    _fake_disk(monkeypatch, lambda path: (1 << 20) if path.startswith(str(tmp_path / "cache")) else None)
    with pytest.raises(USER_ERRORS, match=re.escape(
            f"cache_root={tmp_path / 'cache'} has 1.0 MiB free on its file system; this run writes up to 3.0 MiB "
            "there (the feature cache of the test images); set feature_cache=false or point cache_root at a folder "
            "with room; expected at least 3.0 MiB free.")):  # fmt: skip
        pc.check_free_space(runs[:1])


@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
def test_too_little_room_for_what_a_run_writes_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch,
                                                                                     sweep):  # fmt: skip
    from prograd_pl.__main__ import cli

    build_tree("dtd", tmp_path / "data", n_classes=4)
    _fake_disk(monkeypatch, lambda path: (1 << 20) if path.startswith(str(tmp_path)) else None)  # (above os.statvfs's 64 MiB floor)
    monkeypatch.setattr(sys, "argv", ["prograd_pl"])
    rc = cli([*small_overrides(tmp_path, "dataset=dtd", "shots=1"), *(["-m", "seed=1,2"] if sweep else [])])
    lines = error_lines(capsys.readouterr().err)
    runs = "the sweep's 2 runs write" if sweep else "this run writes"
    assert rc == 1 and len(lines) == 1, lines
    assert re.match(rf"prograd_pl: error: output_root={re.escape(str(tmp_path / 'out'))} has 1\.0 MiB free on its "
                    rf"file system; {runs} up to [0-9.]+ MiB there \(results, checkpoints and logs, and the feature "
                    "cache", lines[0]), lines[0]  # fmt: skip
    assert files_under(tmp_path / "out") == [] and files_under(tmp_path / "cache") == []


# ---- 4. a run hung inside C code still ends after its grace period ---------------------------------------------
@pytest.mark.parametrize(("sig", "again", "code"), [
    pytest.param("SIGTERM", False, 143, id="sigterm_grace"),
    pytest.param("SIGINT", False, 130, id="sigint_grace", marks=pytest.mark.slow),  # ~11 s each: make test-all
    pytest.param("SIGTERM", True, 143, id="second_sigterm", marks=pytest.mark.slow),
])  # fmt: skip
def test_a_run_hung_in_c_code_ends_after_its_grace_or_a_second_signal(tmp_path, sig, again, code):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    grace = 600 if again else 2
    hang = ["+callbacks.hang._target_=reliability3_helpers.HangInCAfterSignal", "+callbacks.hang.step=5",
            f"+callbacks.hang.signal_name={sig}", f"+callbacks.hang.again={again}", f"checkpoint.grace_s={grace}"]
    start = time.monotonic()
    proc = prograd(*small_overrides(tmp_path, "dataset=dtd", "shots=2", "data.batch_size=2", "trainer.max_epochs=3",
                                    "threads=1"), *hang, timeout=240)  # fmt: skip
    elapsed = time.monotonic() - start
    assert proc.returncode == code, proc.stderr[-3000:]
    why = "a second signal" if again else f"{grace} s of grace"
    assert f"stopped after {why} without reaching a save point (exit {code})" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not list((tmp_path / "out").rglob("results.json"))
    (last,) = (tmp_path / "out").rglob("last.ckpt")  # the first epoch's state (4 steps): it resumes the run
    assert last.stat().st_size > 0 and elapsed < 200


def test_a_forked_workers_signal_is_not_counted_by_the_parent():
    # a data-loader worker (forked) gets the terminal's Ctrl-C too; the wakeup fd it inherits must not make the
    # parent count it (one Ctrl-C would then read as a second signal and skip the graceful stop)
    import signal

    from prograd_pl.app import resume

    previous = signal.getsignal(signal.SIGTERM)
    escalation = resume.Escalation(grace_s=None)
    try:
        signal.signal(signal.SIGTERM, escalation._handler(lambda *args: None, resume.SIGTERM_EXIT))
        escalation._watch()
        pid = os.fork()
        if pid == 0:  # the worker receives its own SIGTERM, then leaves
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.3)
        assert escalation._count == 0
        os.kill(os.getpid(), signal.SIGTERM)  # the parent's own signal is counted (by the watcher thread)
        deadline = time.monotonic() + 5
        while escalation._count == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert escalation._count == 1
    finally:
        escalation._stop_watching()
        signal.signal(signal.SIGTERM, previous)


# ---- 3. a DDP batch larger than each rank's share --------------------------------------------------------------
def _train_loader(tmp_path: Path, batch_size: int):
    from prograd_pl.data.datamodule import FewShotDataModule
    from prograd_pl.data.fewshot import fewshot_split
    from prograd_pl.data.registry import load_dataset

    build_tree("dtd", tmp_path / "data", n_classes=4)
    split = fewshot_split(load_dataset("dtd", tmp_path / "data"), 2, seed=1)  # 8 images
    return FewShotDataModule(split.train, split.test, image_size=32, batch_size=batch_size, num_workers=0,
                             seed=1, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).train_dataloader()  # fmt: skip


@pytest.mark.parametrize(("batch_size", "batches", "warned"), [(6, [4], True), (10, [4], False), (4, [4], False),
                                                               (3, [3], False)])  # fmt: skip
def test_a_rank_trains_on_its_share_when_the_batch_is_larger(tmp_path, caplog, batch_size, batches, warned):
    # the loader Lightning builds for each rank of 2 (its own DistributedSampler in the train loader we give it):
    # drop_last is decided on the rank's 4 images, as on the whole list in one process
    import logging

    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import DistributedSampler

    loader = _train_loader(tmp_path, batch_size)
    single = [len(y) for _, y in loader]
    assert single == ([batch_size] * (8 // batch_size) if batch_size <= 8 else [8])  # one process, as before
    for rank in (0, 1):
        sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=rank, shuffle=True, seed=1)
        with caplog.at_level(logging.WARNING, logger="prograd_pl"):
            per_rank = _update_dataloader(loader, sampler)
        assert [len(y) for _, y in per_rank] == batches
    messages = [r.getMessage() for r in caplog.records if "share" in r.getMessage()]
    assert messages == ([f"data.batch_size={batch_size} is larger than each of the 2 processes' share of the 8 "
                         "training images (4); each process trains on one batch of its 4 per step"] if warned else [])


@pytest.mark.slow  # (23-35 s: two processes)
def test_ddp_with_a_batch_larger_than_each_ranks_share_trains(tmp_path):
    # 8 images over 2 ranks with data.batch_size=6: before, each rank's 4 images with drop_last made no batch and
    # the run "trained" 0 steps
    build_tree("dtd", tmp_path / "data", n_classes=4)
    proc = prograd("model=tiny", "dataset=dtd", "shots=2", "data.batch_size=6", "trainer.max_epochs=2", "trainer=ddp",
                   "trainer.accelerator=cpu", "trainer.devices=2", "progress_bar=none", "logger=none", "threads=1",
                   f"data_root={tmp_path / 'data'}", f"output_root={tmp_path / 'out'}",
                   f"cache_root={tmp_path / 'cache'}", timeout=420)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    (result,) = (tmp_path / "out").rglob("results.json")
    train = json.loads(result.read_text())["train"]
    assert train["world_size"] == 2 and train["steps"] == 2  # one batch of 4 per rank and epoch
    warned = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "processes' share" in ln]
    assert len(warned) == 1 and "data.batch_size=6" in warned[0], proc.stdout[-3000:]  # rank 0 alone, once
