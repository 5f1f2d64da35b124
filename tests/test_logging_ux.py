"""What a user sees from real runs (tiny model, miniature dataset trees): each log line once, per-step and per-epoch
progress lines without a terminal, the resolved config as dotted lines, ``log.txt`` in the run folder, a sweep's
counts, and ``--help``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import small_overrides
from data_trees import build_tree

from prograd_pl.app.threads import default_threads

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
RECORD = re.compile(r"^\[[^\]]+\]\[([^\]]+)\]\[([A-Z]+)\] - (.*)$")


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prograd_pl", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip


def overrides(tmp_path: Path, *extra: str) -> list[str]:
    """The tests' small run, with the default progress bar (``auto``: lines, since the output is captured)."""
    return [o for o in small_overrides(tmp_path, *extra) if not o.startswith("progress_bar=")]


def messages(text: str) -> list[str]:
    """Every log record's message (Hydra's format, or Lightning's own ``INFO: ...`` handler's)."""
    found = []
    for line in text.splitlines():
        m = RECORD.match(line)
        if m:
            found.append(m.group(3))
        elif line.startswith(("INFO: ", "WARNING: ")):
            found.append(line.split(": ", 1)[1])
    return found


def test_one_run_logs_each_line_once_with_epoch_lines_and_log_txt(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4, per_class=(6, 3, 3))
    args = ["dataset=dtd", "shots=4", *overrides(tmp_path, "trainer.max_epochs=2", "data.batch_size=4",
                                                 "callbacks.progress_bar.every_n_steps=2")]  # fmt: skip
    proc = cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout + proc.stderr

    # each record once: Lightning's lines (GPU available ...) and the project's, across stdout and stderr
    counts = Counter(messages(printed))
    assert counts["GPU available: False, used: False"] == 1
    assert [m for m, n in counts.items() if n > 1] == []
    assert any(m.startswith("training prograd on dtd") for m in counts)

    # non-TTY progress: a line per 2 steps (4 steps an epoch) and one per epoch, with loss, acc, lr, it/s, ETA
    epoch_lines = [ln for ln in proc.stdout.splitlines() if re.search(r" - epoch \d+/2: ", ln)]
    assert len(epoch_lines) == 2, proc.stdout[-3000:]
    assert re.search(r"epoch 2/2: loss \d+\.\d+, acc \d+\.\d%, lr \d\.\d\de-\d+, [\d.]+ it/s, .* ETA \d+:\d\d:\d\d",
                     epoch_lines[-1])  # fmt: skip
    assert re.search(r" - epoch 1/2 step 2/4: loss \d+\.\d+, lr .*it/s, ETA ", proc.stdout)
    assert "━" not in printed  # no rich bar written into a file

    # the resolved config as dotted key: value lines (recipe values included), once
    assert "resolved config:" in proc.stdout
    for line in ("  method.lam: 1.0", "  trainer.max_epochs: 2", "  shots: 4", "  data.batch_size: 4"):
        assert proc.stdout.count(line + "\n") == 1, line

    # the run folder holds log.txt (everything logged, epoch lines included) and the resolved config
    (run_dir,) = [p.parent for p in (tmp_path / "out").rglob("results.json")]
    log_txt = (run_dir / "log.txt").read_text()
    assert "resolved config:" in log_txt and "  method.lam: 1.0" in log_txt
    assert all(line in log_txt for line in epoch_lines)
    assert "acc" in log_txt.splitlines()[-1] and "GPU available" in log_txt
    assert "trainer:\n" in (run_dir / "config.yaml").read_text()
    assert not list((tmp_path / "out" / ".hydra").rglob("*.log"))  # no second text log under .hydra

    # a sweep counts what it skipped, ran and failed, and names the weights
    proc = cli(["dataset=dtd", "shots=4", "-m", "seed=1,2", *overrides(tmp_path, "trainer.max_epochs=2",
                                                                       "data.batch_size=4")], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sweep: 2 jobs: 1 ran, 1 skipped (finished before), 0 failed; weights: prograd-tiny (random weights)" \
        in proc.stdout  # fmt: skip
    # a sweep's jobs keep their resolved config to their log.txt, the console gets one line per job
    assert "resolved config:" not in proc.stdout
    (seed2,) = [p for p in (tmp_path / "out").rglob("seed2")]
    assert "  seed: 2" in (seed2 / "log.txt").read_text()
    # a sweep whose every job fails on its config is refused before Hydra starts, one sentence per problem (the
    # summary of jobs that fail while running: tests/test_reliability3.py)
    proc = cli(["dataset=dtd", "-m", "method.lam=abc", *overrides(tmp_path)], tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "prograd_pl: error: method.lam must be a finite number >= 0.0 and <= 1.0, got method.lam='abc'."
    ]


def test_help_lists_subcommands_and_public_groups_only(tmp_path):
    proc = cli(["--help"], tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    text = proc.stdout
    for sub in ("report", "diff", "interpret", "data", "weights"):
        assert re.search(rf"^  {sub} +\S", text, re.M), sub
    for group in ("dataset=", "model=", "method=", "trainer=", "logger=", "progress_bar=", "experiment="):
        assert re.search(rf"^  {group} +\S", text, re.M), group
    assert not re.search(r"(^|\s)_\w", text)  # no private group or option (_mini, _real, _prompt, _image)
    assert (
        "prograd* " in text and "examples:" in text and "prograd-pl dataset=dtd shots=4 -m seed=1,2,3" in text
    )
    assert not list(tmp_path.iterdir())  # nothing written


def test_threads_follow_the_model_size():
    assert default_threads(4_700_000, cores=2) == 1  # prograd-mini
    assert default_threads(2_900_000, cores=16) == 2
    assert default_threads(102_000_000, cores=2) is None  # RN50: torch's default
