"""The config layer: every experiment composes, the recipe is in the resolved config, the backbone follows the
data, and a run's folder is its identity (computing options split folders, neutral ones never do)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose
from omegaconf import OmegaConf

from prograd_pl import paper
from prograd_pl.app.config import check, resolve
from prograd_pl.app.identity import differences, file_digest, identity, run_dir

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def folder(overrides: list[str]) -> Path:
    cfg = compose(overrides)
    return run_dir("out", identity(cfg))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_resolves_and_checks(name):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="prograd_pl.conf", version_base="1.3"):
        cfg = hydra_compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
        params = {k: str(v) for k, v in (cfg.hydra.sweeper.params or {}).items()}
    resolved = resolve(cfg)
    check(resolved)
    assert resolved.trainer.max_epochs >= 1 and resolved.model.name
    expected_model = {"mini_vit": "prograd-mini-vit", "mini": "prograd-mini", "vit_b16": "ViT-B-16-quickgelu", "cocoop": "ViT-B-16-quickgelu"}
    model = next((v for k, v in expected_model.items() if k in name), "RN50-quickgelu")
    assert resolved.model.name == model
    if "dataset" in params and not name.startswith("mini"):
        assert params["dataset"].split(",") == list(paper.DATASETS)  # the one list of the paper's datasets
    if "seed" in params:
        assert params["seed"] == "1,2,3"


@pytest.mark.parametrize(("dataset", "shots", "epochs"), [
    ("dtd", 1, 50), ("dtd", 2, 100), ("dtd", 4, 100), ("dtd", 8, 200), ("dtd", 16, 200),
    ("imagenet", 1, 50), ("imagenet", 4, 50), ("imagenet", 16, 50),
])  # fmt: skip
def test_recipe_epochs_are_in_the_resolved_config(dataset, shots, epochs):
    cfg = resolve(compose([f"dataset={dataset}", f"shots={shots}"]))
    assert cfg.trainer.max_epochs == epochs and cfg.method.max_epochs == epochs
    assert cfg.data.batch_size == 32 and cfg.method.template == cfg.dataset.template != ""


def test_recipe_lambda():
    for dataset in (*paper.DATASETS, "mini_shapes"):
        for shots in paper.SHOTS:
            special = dataset in ("oxford_flowers", "dtd", "eurosat") and shots >= 8
            assert paper.recipe_lambda(dataset, shots) == (0.8 if special else 1.0)
    # and in the composed config
    for dataset, shots, lam in [("oxford_flowers", 8, 0.8), ("eurosat", 16, 0.8), ("dtd", 4, 1.0), ("food101", 16, 1.0)]:
        assert resolve(compose([f"dataset={dataset}", f"shots={shots}"])).method.lam == lam


def test_an_explicit_value_wins_over_the_recipe():
    cfg = resolve(compose(["dataset=dtd", "shots=16", "method.lam=0.5", "trainer.max_epochs=7"]))
    assert cfg.method.lam == 0.5 and cfg.trainer.max_epochs == 7 and cfg.method.max_epochs == 7


def test_printed_config_shows_the_recipe():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "prograd_pl", "dataset=dtd", "shots=8", "--cfg", "job", "--resolve"],
                          capture_output=True, text=True, env=env, timeout=300, check=True)  # fmt: skip
    printed = OmegaConf.create(proc.stdout)
    assert printed.method.lam == 0.8 and printed.trainer.max_epochs == 200
    assert printed.model.name == "RN50-quickgelu" and printed.model.pretrained == "openai"
    assert "null" not in [str(printed.method.lam), str(printed.trainer.max_epochs)]


def test_backbone_follows_the_data():
    for ds in ("dtd", "imagenet", "imagenet_a", "eurosat"):
        cfg = resolve(compose([f"dataset={ds}"]))
        assert (cfg.model.name, cfg.model.pretrained) == ("RN50-quickgelu", "openai")
    cfg = resolve(compose(["dataset=mini_digits"]))
    assert (cfg.model.name, cfg.model.pretrained) == ("prograd-mini", "mini:")
    assert resolve(compose(["dataset=dtd", "model=vit_b16"])).model.name == "ViT-B-16-quickgelu"
    assert resolve(compose(["dataset=mini_digits", "model=tiny"])).model.name == "prograd-tiny"
    assert resolve(compose([])).model.name == "prograd-mini"  # the offline default
    from prograd_pl.mini.tasks import DEFAULT_TASK

    assert compose([]).dataset.name == DEFAULT_TASK


BASE = ["dataset=mini_shapes", "method=coop", "shots=1", "seed=1"]


@pytest.mark.parametrize("change", [
    ["trainer.max_epochs=30"], ["method.optim.lr=0.01"], ["method.prompt.n_ctx=8"], ["method.prompt.init=template"],
    ["trainer.precision=bf16-mixed"], ["data.batch_size=8"], ["model=tiny"], ["dataset.template_source=coop"],
    ["setting=base2new"], ["eval_datasets=[mini_shapes_sketch]"],
    ["trainer.devices=2"],
])  # fmt: skip
def test_computing_options_split_folders(change):
    assert folder(BASE) != folder([*BASE, *change])


@pytest.mark.parametrize("neutral", [
    ["data_root=/elsewhere"], ["output_root=o2"], ["cache_root=/c"], ["logger=none"], ["logger=wandb_offline"],
    ["progress_bar=none"], ["data.num_workers=3"], ["threads=1"], ["redo=true"], ["feature_cache=false"],
    ["data.test_batch_size=7"], ["hydra/launcher=local_parallel"],
])  # fmt: skip
def test_neutral_options_share_a_folder(neutral):
    assert folder(BASE) == folder([*BASE, *neutral])


def test_an_option_set_by_an_experiment_file_splits_the_folder(tmp_path):
    # the reported bug: an experiment file that shortens the schedule must not share the recipe run's folder
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "short.yaml").write_text("# @package _global_\ntrainer:\n  max_epochs: 30\n")
    search = f"hydra.searchpath=[file://{tmp_path}]"
    short = folder([search, "experiment=short", *BASE])
    assert short != folder(BASE)
    assert short == folder([*BASE, "trainer.max_epochs=30"])


def test_an_experiment_file_and_the_command_line_give_one_identity():
    # the same computing options, set once by an experiment file and once on the command line
    from_file = folder(["experiment=mini_base2new", "dataset=mini_shapes", "method=coop", "seed=2"])
    by_hand = folder(["setting=base2new", "dataset=mini_shapes", "method=coop", "seed=2", "threads=1", "shots=4"])
    assert from_file == by_hand


def test_the_recipe_splits_folders_through_its_results():
    # 8 shots on dtd: lambda 0.8 by the recipe; setting lambda 1.0 by hand is another run
    assert folder(["dataset=dtd", "shots=8"]) != folder(["dataset=dtd", "shots=8", "method.lam=1.0"])
    assert folder(["dataset=dtd", "shots=8"]) == folder(["dataset=dtd", "shots=8", "method.lam=0.8"])


def test_folders_are_readable_and_need_no_quoting():
    path = folder(["dataset=dtd", "shots=16", "model=vit_b16", "seed=3", "method.optim.lr=0.01"])
    parts = path.parts
    assert parts[:5] == ("out", "fewshot", "dtd", "prograd", "ViT-B-16-quickgelu")
    assert parts[5] == "shots16" and parts[6].startswith("cfg-") and parts[7] == "seed3"
    assert not any(c in str(path) for c in "=,' \"[]{}")
    seeds = {folder(["dataset=dtd", f"seed={s}"]).parent for s in (1, 2, 3)}
    assert len(seeds) == 1  # every seed of one configuration under one cfg-<digest> folder


def test_zeroshot_ignores_shots_and_epochs():
    a = identity(compose(["dataset=dtd", "method=zeroshot", "shots=1"]))
    b = identity(compose(["dataset=dtd", "method=zeroshot", "shots=16", "trainer.max_epochs=9"]))
    assert a == b and a["shots"] == 0 and a["trainer"]["max_epochs"] == 0


def test_tf32_and_compile_identify_a_run_only_away_from_their_defaults():
    plain = identity(compose(BASE))
    assert "tf32" not in plain and "compile" not in plain  # the folders of runs made before the keys existed
    assert identity(compose([*BASE, "tf32=null", "compile=none"])) == plain
    assert differences(plain, identity(compose([*BASE, "tf32=false"]))) == {"tf32": (None, False)}
    assert differences(plain, identity(compose([*BASE, "compile=reduce-overhead"]))) == {
        "compile": (None, "reduce-overhead")
    }


def test_differences_name_what_differs():
    a = identity(compose(BASE))
    b = identity(compose([*BASE, "method.optim.lr=0.01", "trainer.max_epochs=30"]))
    assert differences(a, b) == {"method.optim.lr": (0.002, 0.01), "trainer.max_epochs": (50, 30)}


def test_the_weights_content_and_the_world_version_split_folders(tmp_path, monkeypatch):
    """``mini:`` and a local file name weights that the config does not pin; the mini datasets' pixels depend on the
    generator version: both are in the identity, so new weights or a new world are another run, never a finished
    one read back."""
    import shutil

    from prograd_pl.mini import generate
    from prograd_pl.mini.weights import WEIGHTS_ENV, mini_weights_path

    packaged = identity(compose(BASE))
    assert packaged["model"]["weights_sha256"] == file_digest(mini_weights_path())
    assert packaged["mini_world"] == generate.GENERATOR_VERSION
    copy = tmp_path / "elsewhere.pt"
    shutil.copy(mini_weights_path(), copy)
    monkeypatch.setenv(WEIGHTS_ENV, str(copy))
    assert folder(BASE) == run_dir("out", packaged)  # the same bytes under another path: the same run
    state = torch.load(copy, weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name] + 1
    torch.save(state, copy)
    retrained = identity(compose(BASE))
    assert folder(BASE) != run_dir("out", packaged)
    assert differences(packaged, retrained) == {
        "model.weights_sha256": (packaged["model"]["weights_sha256"], file_digest(copy))
    }
    monkeypatch.delenv(WEIGHTS_ENV)
    monkeypatch.setattr(generate, "GENERATOR_VERSION", generate.GENERATOR_VERSION + 1)
    assert folder(BASE) != run_dir("out", packaged)
    assert identity(compose(["dataset=dtd", "eval_datasets=[mini_shapes_sketch]"]))["mini_world"] == (
        generate.GENERATOR_VERSION
    )  # evaluated on a mini dataset
    # a tag pins its weights, and a real dataset is not the mini world: neither key
    real = identity(compose(["dataset=dtd"]))
    assert "weights_sha256" not in real["model"] and "mini_world" not in real
    local = tmp_path / "my_rn50.pt"
    local.write_bytes(b"weights")
    mine = identity(compose(["dataset=dtd", f"model.pretrained={local}"]))
    assert mine["model"]["weights_sha256"] == file_digest(local)


def test_mini_weights_load_without_false_warning_and_without_touching_the_rng(caplog):
    from prograd_pl.mini import weights
    from prograd_pl.models.backbone import load_backbone

    weights._checked.clear()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with caplog.at_level(logging.WARNING):
        weights.mini_weights_path()  # the check (first load in a process)
    assert torch.equal(torch.rand(3), expected)
    with caplog.at_level(logging.WARNING):
        load_backbone("prograd-mini", "mini:")
    assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()]


def test_wheel_carries_the_configs(tmp_path):
    import shutil

    # build from a copy: setuptools writes build/ next to the sources
    source = tmp_path / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in ("src", "conf"):
        shutil.copytree(ROOT / part, source / part, ignore=skip)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(source)], check=True, capture_output=True, timeout=600)  # fmt: skip
    (whl,) = list(wheels.glob("prograd_pl-*.whl"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "zipfile", "-e", str(whl), str(site)], check=True, timeout=120)
    assert (site / "prograd_pl" / "conf" / "config.yaml").is_file()
    assert (site / "prograd_pl" / "conf" / "experiment" / "fewshot.yaml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    code = ("import prograd_pl, sys; assert prograd_pl.__file__.startswith(sys.argv[1]), prograd_pl.__file__; "
            "from prograd_pl.__main__ import cli; sys.argv=['prograd-pl']; "
            "sys.exit(cli(['dataset=dtd', 'experiment=fewshot', '--cfg', 'job', '--resolve']))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, str(site)], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = OmegaConf.create(proc.stdout)
    assert printed.model.name == "RN50-quickgelu" and printed.trainer.max_epochs == 100


def test_math_modes_are_set_by_every_run_from_its_config():
    import torch

    from prograd_pl.app.devices import set_math_modes

    set_math_modes(compose([*BASE, "trainer=gpu"]))  # setting flags needs no GPU
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32 and torch.backends.cudnn.benchmark
    set_math_modes(compose([*BASE, "trainer=gpu", "tf32=false"]))
    assert not torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.benchmark
    set_math_modes(compose(BASE))  # a CPU run after a GPU run in the same process: nothing carried over
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert not torch.backends.cudnn.benchmark
