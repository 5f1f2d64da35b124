"""Reliability, second round (issue 25): errors before anything is written, paths as data, damaged state that
recovers, full and read-only disks, checkpoints that must fit, single values for lists, sweeps that end with their
summary. Tests run as root, so read-only and full file systems are simulated by injecting the OS errors."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose, small_overrides
from data_trees import build_tree

from prograd_pl import atomic
from prograd_pl.__main__ import cli
from prograd_pl.app import resume
from prograd_pl.app.config import single_values_as_lists
from prograd_pl.app.identity import identity, run_dir
from prograd_pl.app.run import run
from prograd_pl.errors import USER_ERRORS, DiskError
from prograd_pl.models.checkpoint import CHECKPOINT_NAME
from prograd_pl.sweep import quoted

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "tests")}
ODD = "a=b,c é 'q'"  # every character Hydra's grammar treats specially, a space and a non-ASCII letter


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")) if root.exists() else []


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# ---- 1. the whole config is checked before anything is written ------------------------------------------------
CONFIG_CASES = [
    (["trainer.devices=0"], "trainer.devices=0 with trainer.accelerator=cpu"),
    (["trainer.devices=-1"], "trainer.devices=-1 with trainer.accelerator=cpu"),
    (["trainer.devices=abc"], "trainer.devices='abc'"),
    (["trainer.strategy=foo"], "trainer.strategy='foo' is not a Lightning strategy"),
    (["checkpoint.every_n_epochs=abc"], "checkpoint.every_n_epochs must be an integer >= 1"),
    (["checkpoint.every_n_epochs=0"], "checkpoint.every_n_epochs must be an integer >= 1"),
    (["checkpoint.resume=maybe"], "checkpoint.resume must be true or false"),
    (["+method.lamda=0.5"], "method.lamda is not an option of .*; did you mean method.lam"),
    (["+trainer.max_epoch=3"], "trainer.max_epoch is not an option of lightning.pytorch.Trainer"),
    (["seed=4294967296"], "seed must be an integer >= 0 and <= 4294967295"),
    (["seed=" + "7" * 5000], "seed has 5000 digits"),
    (["foo=1"], "Could not override 'foo'"),
    (["dataset=nosuch"], "dataset=nosuch is not a config of dataset; expected one of"),
    (["output_root=a,b"], "Ambiguous value for argument 'output_root=a,b'; quote it"),
    (["method=zeroshot", "ckpt=/nonexistent/prompt_learner.pt"], "method=zeroshot .* cannot use ckpt="),
    (["eval_datasets=nosuch"], "unknown dataset 'nosuch'"),
]


@pytest.mark.parametrize(("overrides", "message"), CONFIG_CASES, ids=[c[0][0][:40] for c in CONFIG_CASES])
def test_config_error_is_one_sentence_and_writes_nothing(tmp_path, capsys, monkeypatch, overrides, message):
    monkeypatch.setattr(sys, "argv", ["prograd_pl"])
    rc = cli([*small_overrides(tmp_path, "dataset=dtd"), *overrides])
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert rc == 1 and 1 <= len(lines) <= 3, err
    assert lines[0].startswith("prograd_pl: error: ") and "Traceback" not in err
    assert re.search(message, lines[0]), lines[0]
    assert files_under(tmp_path) == []  # no run folder, no identity.json, no .hydra folder, no data, no cache


def test_output_root_a_file_or_too_long_is_named_before_hydra(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prograd_pl"])
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    cases = [(str(blocker), "is a file; expected a folder"),
             (str(tmp_path / ("x" * 300)), "folder name of 300 bytes"),
             (str(tmp_path / "/".join(["y" * 200] * 20)), "bytes long; runs need it shorter")]  # fmt: skip
    for root, message in cases:
        rc = cli([*small_overrides(tmp_path, "dataset=dtd"), f"output_root={root}"])
        lines = error_lines(capsys.readouterr().err)
        assert rc == 1 and len(lines) == 1 and message in lines[0], lines
    assert files_under(tmp_path) == [blocker]


def test_read_only_or_full_output_root_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    real = os.statvfs
    state = {"flag": 0, "bavail": None}

    def statvfs(path):  # the file system of tmp_path as a read-only or full one
        st = real(path)
        if not str(path).startswith(str(tmp_path)):
            return st
        values = list(st)
        values[8] = st.f_flag | state["flag"]
        if state["bavail"] is not None:
            values[4] = state["bavail"]
        return os.statvfs_result(values)

    monkeypatch.setattr(os, "statvfs", statvfs)
    monkeypatch.setattr(sys, "argv", ["prograd_pl"])
    for flag, bavail, message in ((os.ST_RDONLY, None, "is on a read-only file system"), (0, 10, "MiB free")):
        state.update(flag=flag, bavail=bavail)
        rc = cli(small_overrides(tmp_path, "dataset=dtd"))
        lines = error_lines(capsys.readouterr().err)
        assert rc == 1 and len(lines) == 1 and "output_root=" in lines[0] and message in lines[0], lines
    assert files_under(tmp_path) == []


def test_weights_file_that_is_crafted_or_damaged_is_one_sentence(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prograd_pl"])
    files = tmp_path / "files"
    files.mkdir()
    (files / "crafted.pt").write_bytes(b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.")
    (files / "fakezip.pt").write_bytes(b"PK\x03\x04" + bytes(200))
    for name, message in (("crafted.pt", "(UnpicklingError;"), ("fakezip.pt", "(a damaged zip archive")):
        rc = cli([*small_overrides(tmp_path, "dataset=dtd"), f"model.pretrained={files / name}"])
        lines = error_lines(capsys.readouterr().err)
        assert rc == 1 and len(lines) == 1 and "is not a weights file " + message in lines[0], lines
    assert [p.name for p in files_under(tmp_path)] == ["files", "crafted.pt", "fakezip.pt"]


def test_cli_config_error_exit_status_and_no_hydra_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "prograd_pl", *small_overrides(tmp_path), "trainer.devices=-1"],
                          env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1 and len(lines) <= 3 and lines[-1].startswith("prograd_pl: error: trainer.devices=-1")
    assert "Traceback" not in proc.stderr and files_under(tmp_path) == []


@pytest.mark.parametrize("flags", [["-m", "--cfg", "job"], ["--cfg=job", "--info"], ["-c", "job", "--multirun"]])
def test_two_hydra_modes_are_one_sentence(tmp_path, capsys, flags):
    rc = cli([*small_overrides(tmp_path), *flags])
    lines = error_lines(capsys.readouterr().err)
    assert rc == 1 and len(lines) == 1 and "cannot be given together" in lines[0], lines
    assert files_under(tmp_path) == []


def _sigint_as_at_a_terminal() -> None:
    """A command started in the background (``cmd &`` in a script, as a CI runner may start the tests) inherits SIGINT
    ignored, and so would the run under test; a user's run at a terminal has the default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_during_start_up_exits_130_without_traceback(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "prograd_pl", *small_overrides(tmp_path)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_as_at_a_terminal)  # fmt: skip
    time.sleep(1.5)  # importing the config and torch: long before the first training step
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    # the libraries' C++ import code never sees the interrupt (prograd_pl.startup), so neither an abort (-6) nor
    # the interpreter's own death by SIGINT (-2) after cli() caught it
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert error_lines(err) == ["prograd_pl: interrupted"]


def test_sigint_while_the_libraries_load_is_raised_after_they_have_loaded():
    from prograd_pl.startup import sigint_held

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # (as at a terminal; see above)
    try:
        reached = False
        with pytest.raises(KeyboardInterrupt):
            with sigint_held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # Python runs the handler here: it must only record the signal
                reached = True
        assert reached and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        # a process that ignores SIGINT (started with nohup or `&`) keeps ignoring it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with sigint_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


# ---- 2. paths are data ---------------------------------------------------------------------------------------
def test_odd_characters_in_every_path_finish_and_a_rerun_finds_the_run(tmp_path):
    odd = tmp_path / ODD
    build_tree("dtd", odd / "data", n_classes=4)
    paths = [f"data_root={quoted(str(odd / 'data'))}", f"output_root={quoted(str(odd / 'out'))}",
             f"cache_root={quoted(str(odd / 'cache'))}"]  # fmt: skip
    args = [*small_overrides(tmp_path, "dataset=dtd", "shots=1")[:1], *small_overrides(tmp_path)[4:], *paths,
            "dataset=dtd", "shots=1"]  # fmt: skip
    first = subprocess.run([sys.executable, "-m", "prograd_pl", *args], env=ENV, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    (result,) = (odd / "out").rglob("results.json")
    assert ODD in json.loads(result.read_text())["run_dir"]
    # the data root through $PROGRAD_DATA (no quoting at all), the rest as before: the same run, read back
    env = {**ENV, "PROGRAD_DATA": str(odd / "data")}
    again = subprocess.run([sys.executable, "-m", "prograd_pl", *[a for a in args if not a.startswith("data_root")]],
                           env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0 and "skipping finished run" in again.stderr + again.stdout, again.stderr[-3000:]
    # a checkpoint and a weights file in such a folder
    ckpt = result.parent / CHECKPOINT_NAME
    res = run(compose([*small_overrides(tmp_path, "dataset=dtd"), *paths, f"ckpt={quoted(str(ckpt))}",
                       f"output_root={quoted(str(odd / 'eval'))}"]))  # fmt: skip
    assert res["train"]["epochs"] == 0 and ODD in res["run_dir"]


def test_weights_file_in_an_odd_folder(tmp_path, tiny_backbone):
    odd = tmp_path / ODD
    build_tree("dtd", tmp_path / "data", n_classes=4)
    odd.mkdir()
    torch.save(tiny_backbone.model.state_dict(), odd / "tiny.pt")
    overrides = small_overrides(tmp_path, "dataset=dtd", "method=zeroshot", f"model.pretrained={quoted(str(odd / 'tiny.pt'))}")
    res = run(compose(overrides))
    assert res["pretrained"] == str(odd / "tiny.pt")
    assert run(compose(overrides))["run_dir"] == res["run_dir"]


# ---- 3. damaged state recovers -------------------------------------------------------------------------------
def _resume_overrides(tmp_path: Path) -> list[str]:
    return small_overrides(tmp_path, "dataset=dtd", "shots=2", "trainer.max_epochs=2", "data.batch_size=4", "threads=1")


@pytest.mark.parametrize("damage", ["truncated", "empty", "crafted", "other_tensors"])
def test_damaged_last_ckpt_is_set_aside_and_the_run_restarts(tmp_path, caplog, damage):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    overrides = _resume_overrides(tmp_path)
    cfg = compose(overrides)
    folder = run_dir(tmp_path / "out", identity(single_values_as_lists(cfg)))
    folder.mkdir(parents=True)
    last = folder / resume.LAST_NAME
    if damage == "truncated":
        torch.save({"state_dict": {"x": torch.zeros(1000)}}, last)
        last.write_bytes(last.read_bytes()[:300])
    elif damage == "empty":
        last.write_bytes(b"")
    elif damage == "crafted":
        last.write_bytes(b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.")
    else:
        torch.save({"state_dict": {"prompt_learner.ctx": torch.zeros(3, 3)}, "optimizer_states": [], "loops": {},
                    "epoch": 0, "global_step": 4}, last)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="prograd_pl"):
        res = run(cfg)
    warned = [r for r in caplog.records if "cannot resume the run" in r.getMessage()]
    assert len(warned) == 1 and "training from the start" in warned[0].getMessage()
    assert res["train"]["resumed_epoch"] == 0 and res["train"]["steps"] == 4  # 8 images, batch 4, 2 epochs
    assert len(list(folder.glob(f"{resume.LAST_NAME}.corrupt-*"))) == 1 and not last.exists()


# ---- 4. disk faults --------------------------------------------------------------------------------------------
def test_full_disk_while_saving_last_ckpt_keeps_the_previous_one_and_no_temporary(tmp_path, monkeypatch):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    overrides = small_overrides(tmp_path, "dataset=dtd", "shots=2", "trainer.max_epochs=3", "data.batch_size=4",
                                "threads=1")  # fmt: skip
    real_replace, saved = os.replace, []

    def replace(src, dst):  # the second last.ckpt meets a full disk
        if str(dst).endswith(resume.LAST_NAME):
            if saved:
                raise OSError(errno.ENOSPC, "No space left on device")
            saved.append(Path(src).read_bytes())
        return real_replace(src, dst)

    monkeypatch.setattr(resume.os, "replace", replace)
    with pytest.raises(DiskError, match=r"cannot write .*last.ckpt: No space left on device; the previous file"):
        run(compose(overrides))
    monkeypatch.setattr(resume.os, "replace", real_replace)
    (last,) = (tmp_path / "out").rglob(resume.LAST_NAME)
    assert last.read_bytes() == saved[0]
    assert [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")] == []
    res = run(compose(overrides))  # the rerun resumes after the first epoch
    assert res["train"]["resumed_epoch"] == 1


def test_read_only_output_root_met_while_writing_is_one_sentence(tmp_path, monkeypatch):
    build_tree("dtd", tmp_path / "data", n_classes=4)

    def mkstemp(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    with pytest.raises(DiskError, match=r"(identity\.json|config\.yaml): Read-only file system") as info:
        run(compose(small_overrides(tmp_path, "dataset=dtd", "shots=1")))
    assert isinstance(info.value, USER_ERRORS) and "\n" not in str(info.value)
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def test_read_only_data_root_for_a_mini_dataset_is_one_sentence(tmp_path, monkeypatch):
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):  # the data root is on a read-only file system
        if str(self).startswith(str(tmp_path / "data")):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(USER_ERRORS, match=r"dataset mini_colors cannot be prepared under data_root=.*"
                                          r"\(Read-only file system\); point data_root") as info:  # fmt: skip
        run(compose(small_overrides(tmp_path, "dataset=mini_colors")))
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("fault", ["runtime", "erofs"])
def test_cache_that_cannot_be_written_degrades_to_no_cache_with_one_line(tmp_path, monkeypatch, caplog, fault):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    build_tree("eurosat", tmp_path / "data", n_classes=4)
    cache = tmp_path / "cache"
    real_save, real_replace = torch.save, os.replace

    def save(obj, f, *args, **kwargs):  # torch's own writer reports a full disk as a RuntimeError
        if "features" in obj:
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                               "data/0: file write failed")  # fmt: skip
        return real_save(obj, f, *args, **kwargs)

    def replace(src, dst):
        if str(dst).startswith(str(cache)):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_replace(src, dst)

    if fault == "runtime":
        monkeypatch.setattr(torch, "save", save)
    else:
        monkeypatch.setattr(atomic.os, "replace", replace)
    with caplog.at_level(logging.WARNING, logger="prograd_pl"):
        res = run(compose(small_overrides(tmp_path, "dataset=dtd", "method=zeroshot", "eval_datasets=[eurosat]")))
    warned = [r.getMessage() for r in caplog.records if "feature cache" in r.getMessage()]
    assert len(warned) == 1 and "continuing without the cache" in warned[0] and "\n" not in warned[0]
    assert 0.0 <= res["metrics"]["acc"] <= 100.0
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # no entry, no temporary


# ---- 5. checkpoints must fit -----------------------------------------------------------------------------------
def test_checkpoint_mismatches_are_one_sentence(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    build_tree("eurosat", tmp_path / "data", n_classes=4)
    short = run(compose(small_overrides(tmp_path, "dataset=dtd", "shots=1", "method=coop", "method.prompt.n_ctx=4",
                                        "method.prompt.init=random")))["run_dir"]  # fmt: skip
    csc = run(compose(small_overrides(tmp_path, "dataset=dtd", "shots=1", "method=coop", "method.prompt.csc=true",
                                      "method.prompt.init=random", "seed=2")))["run_dir"]  # fmt: skip
    ev = tmp_path / "ev"
    cases = [
        ([f"ckpt={short}", "method=coop"], "has method.prompt.n_ctx=4, not 16; pass method.prompt.n_ctx=4"),
        ([f"ckpt={short}", "method=prograd", "method.prompt.n_ctx=4"], "was trained with method=coop, not method=prograd"),
        ([f"ckpt={csc}", "method=coop", "method.prompt.csc=true", "dataset=eurosat"],
         "holds class-specific contexts of other classes .*ckpt_classes=ignore"),
    ]  # fmt: skip
    for extra, message in cases:
        with pytest.raises(USER_ERRORS, match=message) as info:
            run(compose([*small_overrides(tmp_path, "dataset=dtd", f"output_root={ev}"), *extra]))
        assert "\n" not in str(info.value)
    assert files_under(ev) == []
    used = run(compose([*small_overrides(tmp_path, "dataset=eurosat", f"output_root={ev}"), f"ckpt={csc}",
                        "method=coop", "method.prompt.csc=true", "ckpt_classes=ignore"]))  # fmt: skip
    assert used["dataset"] == "eurosat" and used["train"]["epochs"] == 0


# ---- 6. lists accept a single value ----------------------------------------------------------------------------
def test_a_single_eval_dataset_is_a_list_of_one(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    build_tree("eurosat", tmp_path / "data", n_classes=4)
    base = small_overrides(tmp_path, "dataset=dtd", "method=zeroshot")
    single, listed = compose([*base, "eval_datasets=eurosat"]), compose([*base, "eval_datasets=[eurosat]"])
    assert identity(single_values_as_lists(single)) == identity(single_values_as_lists(listed))
    res = run(compose([*base, "eval_datasets=eurosat"]))
    written = json.loads((Path(res["run_dir"]) / "results.json").read_text())
    assert [e["eval_dataset"] for e in written["evals"]] == ["eurosat"]


# ---- 7. a sweep always ends with its summary -------------------------------------------------------------------
@pytest.mark.slow  # 11 s; make test covers a sweep with one valid and one bad job in test_reliability3
def test_a_sweep_with_a_bad_seed_names_it_and_runs_the_others(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    proc = subprocess.run([sys.executable, "-m", "prograd_pl", "-m", "seed=1,4294967296", "dataset=dtd", "shots=1",
                           *small_overrides(tmp_path)], env=ENV, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "1 job(s) of the sweep failed" in proc.stderr and "seed=4294967296" in proc.stderr
    assert "seed must be an integer >= 0 and <= 4294967295" in proc.stderr
    (result,) = (tmp_path / "out").rglob("results.json")
    assert "seed1" in str(result)
    assert not list((tmp_path / "out").rglob("seed4294967296"))  # the failed job wrote nothing under a run folder


def test_a_job_failing_with_an_unexpected_error_is_recorded_with_its_traceback(tmp_path):
    from prograd_pl.app.sweep_failures import MARKER, TRACEBACK, record_failure

    try:
        raise KeyError("boom\nsecond line")
    except KeyError as err:
        reason = record_failure(tmp_path / "0", err, ["seed=1"])
    assert reason.startswith("KeyError: ") and "\n" not in reason and TRACEBACK in reason
    assert (tmp_path / "0" / MARKER).read_text().splitlines() == [reason, "seed=1"]
    assert "Traceback" in (tmp_path / "0" / TRACEBACK).read_text()


# ---- 3b. the few-shot cache is checked against the dataset and bound to its split ---------------------------
def _edited_cache(tmp_path: Path, edit) -> Path:
    """A valid shots=2 cache of dtd, edited by ``edit(raw)``."""
    from prograd_pl.data.fewshot import cache_file, fewshot_split
    from prograd_pl.data.registry import load_dataset

    build_tree("dtd", tmp_path, n_classes=4)
    fewshot_split(load_dataset("dtd", tmp_path), 2, seed=1, data_root=tmp_path)
    cache = cache_file(tmp_path / "dtd", 2, 1)
    raw = json.loads(cache.read_text())
    edit(raw)
    cache.write_text(json.dumps(raw))
    return cache


@pytest.mark.parametrize(("edit", "message"), [
    (lambda raw: raw.update(train=raw["train"][::2]), "has 1 train images of class"),
    (lambda raw: raw.update(train=[e for e in raw["train"] if e[1] != 3]), "has 0 train images of class"),
    (lambda raw: raw["train"].__setitem__(0, None), "expected [relpath, label, classname]"),
    (lambda raw: raw.update(source_sha256="0" * 64), "drawn from another version of the dataset's split"),
    (lambda raw: raw["train"].__setitem__(1, raw["train"][0]), "twice"),
], ids=["one_per_class", "missing_class", "bad_entry", "other_split", "duplicate"])  # fmt: skip
def test_edited_fewshot_cache_is_rebuilt(tmp_path, caplog, edit, message):
    from prograd_pl.data.fewshot import cache_file, fewshot_split
    from prograd_pl.data.registry import load_dataset

    cache = _edited_cache(tmp_path, edit)
    with caplog.at_level(logging.WARNING, logger="prograd_pl.data.fewshot"):
        fs = fewshot_split(load_dataset("dtd", tmp_path), 2, seed=1, data_root=tmp_path)
    (warned,) = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert message in warned and str(cache) in warned
    fresh = fewshot_split(load_dataset("dtd", tmp_path), 2, seed=1)
    assert fs.train == fresh.train and fs.val == fresh.val and cache_file(tmp_path / "dtd", 2, 1).is_file()


def test_fewshot_cache_listing_a_test_image_is_rebuilt(tmp_path, caplog):
    from prograd_pl.data.fewshot import cache_file, fewshot_split
    from prograd_pl.data.registry import load_dataset

    build_tree("dtd", tmp_path, n_classes=4)
    splits = load_dataset("dtd", tmp_path)
    fewshot_split(splits, 2, seed=1, data_root=tmp_path)
    cache = cache_file(tmp_path / "dtd", 2, 1)
    raw = json.loads(cache.read_text())
    leak = splits.test[0]
    raw["train"][0] = [str(Path(leak.path).relative_to(tmp_path / "dtd")), leak.label, leak.classname]
    cache.write_text(json.dumps(raw))
    with caplog.at_level(logging.WARNING, logger="prograd_pl.data.fewshot"):
        fs = fewshot_split(splits, 2, seed=1, data_root=tmp_path)
    assert any("lists the test image" in r.getMessage() for r in caplog.records)
    assert not {d.path for d in fs.train} & {d.path for d in splits.test}


# ---- 8. a run stuck before its next save point still ends ------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("how", "code"), [("grace", 143), ("second_sigterm", 143), ("second_sigint", 130)])
def test_a_stuck_run_ends_after_a_second_signal_or_its_grace(tmp_path, how, code):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    hang = ["+callbacks.hang._target_=reliability_helpers.HangAfterSignal", "+callbacks.hang.step=2",
            f"+callbacks.hang.signal_name={'SIGINT' if how == 'second_sigint' else 'SIGTERM'}",
            f"+callbacks.hang.again={how != 'grace'}",
            f"checkpoint.grace_s={3 if how == 'grace' else 600}"]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "prograd_pl", *small_overrides(tmp_path, "dataset=dtd", "shots=2",
                           "data.batch_size=2", "trainer.max_epochs=3"), *hang], env=ENV, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == code, proc.stderr[-3000:]
    # (SIGINT raises KeyboardInterrupt even inside this Python-level hang, so Lightning's own stop ends it, 130)
    assert "without reaching a save point" in proc.stderr or how == "second_sigint"
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not list((tmp_path / "out").rglob("results.json")) and time.monotonic() - start < 120


# ---- 9. DDP with every default finishes ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("bar", ["default", "rich"])
def test_ddp_with_the_default_progress_bar_logger_and_callbacks_finishes(tmp_path, bar):
    # before: rank 0's progress bar computed the epoch's sync_dist metrics alone (an all-gather no other rank
    # joined) and the run hung after "All distributed processes registered"
    build_tree("dtd", tmp_path / "data", n_classes=4)
    args = ["model=tiny", "dataset=dtd", "shots=2", "data.batch_size=2", "trainer.max_epochs=2", "trainer=ddp",
            "trainer.accelerator=cpu", "trainer.devices=2", f"data_root={tmp_path / 'data'}",
            f"output_root={tmp_path / 'out'}", f"cache_root={tmp_path / 'cache'}",
            *(["progress_bar=rich"] if bar == "rich" else [])]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "prograd_pl", *args], env=ENV, capture_output=True, text=True,
                          timeout=420)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = (tmp_path / "out").rglob("results.json")
    train = json.loads(result.read_text())["train"]
    assert train["world_size"] == 2 and train["steps"] == 4  # 8 images, 2 ranks x batch 2: 2 steps per epoch
