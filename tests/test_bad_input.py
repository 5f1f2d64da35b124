"""Every bad input gets one sentence naming the option or file, exit status 1, before any work: no results,
checkpoint or cache file appears."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose, small_overrides
from data_trees import build_tree

from prograd_pl.app.run import run
from prograd_pl.errors import USER_ERRORS

CASES = [
    (["seed=abc"], "seed must be an integer"),
    (["seed=1.5"], "seed must be an integer"),
    (["seed=-1"], "seed must be an integer >= 0"),
    (["shots=0"], "shots must be an integer >= 1"),
    (["shots=abc"], "shots must be an integer"),
    (["shots=2.5"], "shots must be an integer"),
    (["setting=transfer"], "setting='transfer'"),
    (["method.prompt.n_ctx=100"], "method.prompt.n_ctx=100 does not fit"),
    (["method.prompt.n_ctx=abc"], "method.prompt.n_ctx must be an integer"),
    (["method.prompt.n_ctx=0"], "method.prompt.n_ctx must be an integer >= 1"),
    (["method.prompt.init=zeros"], "method.prompt.init='zeros'"),
    (["method.prompt.csc=maybe"], "method.prompt.csc must be true or false"),
    (["method.encoding=fast"], "method.encoding='fast'"),
    (["compile=fast"], "compile='fast' is not one of none, default, reduce-overhead"),
    (["tf32=maybe"], "tf32='maybe' must be true, false or null"),
    (["method.lam=abc"], "method.lam must be a finite number"),
    (["method.lam=-1"], "method.lam must be a finite number >= 0.0 and <= 1.0"),
    (["method.lam=2"], "method.lam must be a finite number >= 0.0 and <= 1.0"),
    (["method.lam=nan"], "method.lam must be a finite number"),
    (["method.temperature=0"], "method.temperature must be a finite number > 0.0"),
    (["method.optim.lr=-1"], "method.optim.lr must be a finite number > 0.0"),
    (["method.optim.lr=abc"], "method.optim.lr must be a finite number"),
    (["method.optim.momentum=1.5"], "method.optim.momentum must be a finite number"),
    (["method.optim.weight_decay=-0.1"], "method.optim.weight_decay must be a finite number"),
    (["method.warmup_epochs=-1"], "method.warmup_epochs must be an integer >= 0"),
    (["data.batch_size=0"], "data.batch_size must be an integer >= 1"),
    (["data.batch_size=abc"], "data.batch_size must be an integer >= 1"),
    (["data.test_batch_size=0"], "data.test_batch_size must be an integer >= 1"),
    (["data.num_workers=-1"], "data.num_workers must be an integer >= 0"),
    (["threads=-1"], "threads must be an integer >= 1"),
    (["trainer.max_epochs=-2"], "trainer.max_epochs must be an integer >= 0"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs must be an integer"),
    (["trainer.precision=64"], "trainer.precision='64'"),
    (["trainer=gpu"], "no GPU is visible"),
    (["trainer.accelerator=quantum"], "trainer.accelerator='quantum'"),
    (["dataset.template_source=clip"], "dataset.template_source='clip'"),
    (["eval_datasets=[nosuch]"], "unknown dataset 'nosuch'"),
    (["dataset=imagenet_a", "method=coop"], "dataset=imagenet_a is test-only"),
    (["redo=perhaps"], "must be true or false, got redo="),
    (["ckpt=/nonexistent/prompt_learner.pt"], "does not exist"),
    (["model.name=NoSuchNet"], "model.name='NoSuchNet'"),
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    build_tree("dtd", root / "data", n_classes=4)
    return root


def produced(root: Path) -> list[Path]:
    names = ("results.json", "prompt_learner.pt", "last.ckpt")
    return [p for p in root.rglob("*") if p.name in names or p.suffix == ".pt"]


@pytest.mark.parametrize(("overrides", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_option_one_sentence_before_any_work(tree, tmp_path, overrides, message):
    base = small_overrides(tmp_path, "dataset=dtd", "shots=2")
    base[1] = f"data_root={tree / 'data'}"
    with pytest.raises(USER_ERRORS, match=message.replace("[", r"\[").replace("(", r"\(")) as info:
        run(compose([*base, *overrides]))
    assert "\n" not in str(info.value)
    assert produced(tmp_path) == []


def test_bad_files(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    blocked = tmp_path / "ro"
    blocked.mkdir()
    blocked.chmod(0o500)
    cases = [
        ([f"data_root={text}"], "data_root="),
        ([f"model.pretrained={text}"], "is not a weights file"),
        ([f"ckpt={text}"], "is not a prograd_pl context checkpoint"),
    ]
    if os.geteuid() != 0:  # root may write anywhere
        cases.append(([f"output_root={blocked / 'out'}"], "is not writable"))
    for overrides, message in cases:
        with pytest.raises(USER_ERRORS, match=message):
            run(compose([*small_overrides(tmp_path, "dataset=dtd", "shots=2"), *overrides]))
    assert produced(tmp_path) == []


def test_empty_class_folder_and_class_without_test_images(tmp_path):
    for name in ("imagenet", "imagenet_sketch"):
        build_tree(name, tmp_path / "data", n_classes=3, per_class=(3, 0, 2))
    sketch = tmp_path / "data" / "imagenet-sketch" / "images"
    empty = sketch / sorted(p.name for p in sketch.iterdir())[0]
    for f in empty.iterdir():
        f.unlink()
    with pytest.raises(USER_ERRORS, match=f"class folder {empty} holds no images"):
        run(compose(small_overrides(tmp_path, "dataset=imagenet_sketch", "method=zeroshot")))
    assert produced(tmp_path) == []


def test_cli_exit_status_and_message_form(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    for args in (["seed=abc"], ["method.lam=2"], ["interpret", str(tmp_path)]):
        proc = subprocess.run([sys.executable, "-m", "prograd_pl", *args, *(
            small_overrides(tmp_path) if args[0] != "interpret" else [])], env=env, capture_output=True, text=True,
            timeout=300)  # fmt: skip
        assert proc.returncode == 1, proc.stderr[-2000:]
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("prograd_pl: error: ")]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
