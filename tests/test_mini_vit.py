"""The pretrained mini ViT (``model=mini_vit``): its committed weights and model card, its config, and the
deep-prompt methods run on it offline as a user types them (the command line with its defaults)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose

from prograd_pl.app.config import check, resolve
from prograd_pl.app.identity import identity
from prograd_pl.errors import ConfigError
from prograd_pl.mini.weights import MINI_MODELS, MiniWeightsError, check_mini_weights, mini_weights_path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))  # the mini world's tools (mini_zeroshot)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
VIT = "prograd-mini-vit"


def card_zero_shot_vit(task: str) -> float:
    """The mini ViT's zero-shot accuracy (ProGrad template) in the model card's mini ViT table."""
    card = (REPO / "src" / "prograd_pl" / "assets" / "PROGRAD_MINI.md").read_text(encoding="utf-8")
    section = card[card.index("## prograd-mini-vit") :]
    row = next(line for line in section.splitlines() if line.startswith(f"| {task} "))
    return float(row.split("|")[2])


def test_committed_mini_vit_weights_are_small_fp16_and_know_the_world(tmp_path):
    """The packaged weights pass the check, are fp16 and small, and a zero-shot run on the renditions set (read from
    disk) is far above chance and what the model card says."""
    import open_clip
    from mini_zeroshot import to_model_input, zero_shot_accuracy
    from PIL import Image

    from prograd_pl.data.registry import load_dataset
    from prograd_pl.mini.weights import register_mini_config

    path = mini_weights_path(model=VIT)
    assert path == MINI_MODELS[VIT].file and path.stat().st_size <= 10 * 2**20
    state = torch.load(path, weights_only=True)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    register_mini_config()
    model = open_clip.create_model(VIT, pretrained=str(path)).eval()
    splits = load_dataset("mini_textures_renditions", tmp_path)
    images = to_model_input([Image.open(d.path) for d in splits.test])
    acc = zero_shot_accuracy(model, open_clip.get_tokenizer(VIT), images, [d.label for d in splits.test],
                             splits.classnames, splits.template)  # fmt: skip
    assert 2 * 100.0 / len(splits.classnames) < acc < 95.0, acc  # (the card: 2.8x chance)
    assert acc == pytest.approx(card_zero_shot_vit("mini_textures_renditions"), abs=0.3)


def test_a_mini_weights_value_must_name_a_mini_model_and_match_model_name():
    with pytest.raises(ConfigError, match=r"model.pretrained=mini:vit holds prograd-mini-vit's weights, not "
                                          r"model.name=prograd-mini's; use model=mini_vit\."):  # fmt: skip
        check(resolve(compose(["model=mini", "model.pretrained=mini:vit"])))
    with pytest.raises(ConfigError, match=r"model.pretrained=mini:resnet names no mini model; expected one of mini:, "
                                          r"mini:vit\."):  # fmt: skip
        check(resolve(compose(["model=mini", "model.pretrained=mini:resnet"])))


def test_missing_or_foreign_mini_vit_weights_name_the_file_and_its_rebuild_command(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.pt"
    monkeypatch.setenv(MINI_MODELS[VIT].env, str(missing))
    with pytest.raises(MiniWeightsError) as err:
        mini_weights_path(model=VIT)
    assert str(missing) in str(err.value)
    assert "python tools/mini_pretrain.py --model prograd-mini-vit --out src/prograd_pl/assets/prograd_mini_vit.pt" in str(err.value)
    with pytest.raises(MiniWeightsError, match="lacks 55 tensors of the prograd-mini-vit architecture"):  # ResNet weights
        check_mini_weights(mini_weights_path(), VIT)


def test_the_rule_variants_for_sweeps_are_the_same_runs_as_the_rule_option():
    """``method=maple_prograd`` is ``method=maple method.rule=prograd``; neither is a variant of its recipe in the
    tables (the rule, its lam and the model's prompt depth are the recipe), while a changed depth is."""
    from prograd_pl.app.run import recipe_extras

    for method in ("ivlp", "maple", "promptsrc"):
        cfg = compose(["model=mini_vit", f"method={method}_prograd"])  # (a run's identity: of the composed config)
        alias = identity(cfg)
        option = identity(compose(["model=mini_vit", f"method={method}", "method.rule=prograd"]))
        assert alias == option
        assert alias["method"]["rule"] == "prograd" and alias["method"]["name"] == method
        assert recipe_extras(alias, cfg) == {}
    cfg = compose(["model=rn50", "method=cocoop", "method.rule=prograd"])
    assert recipe_extras(identity(cfg), cfg) == {}
    cfg = compose(["model=mini_vit", "method=maple", "method.prompt.depth=2"])
    assert recipe_extras(identity(cfg), cfg) == {"method.prompt.depth": 2}
    depths = resolve(compose(["model=mini_vit", "method=maple"])).method.prompt
    assert depths.depth == 3  # the model's prompt_depth; ViT-B/16 keeps the papers' 9
    assert resolve(compose(["model=vit_b16", "method=ivlp"])).method.prompt.text_depth == 9


@pytest.mark.parametrize("method", [
    "maple_rule",
    pytest.param("ivlp", marks=pytest.mark.slow),
    pytest.param("promptsrc_rule", marks=pytest.mark.slow),
])  # fmt: skip
def test_a_deep_method_trains_and_evaluates_on_the_mini_vit_as_typed(tmp_path, method):
    """``python -m prograd_pl model=mini_vit method=maple method.rule=prograd setting=base2new shots=2
    trainer.max_epochs=2``, the default progress bar and logger, on the default mini task."""
    name, _, rule = method.partition("_")
    cmd = [sys.executable, "-m", "prograd_pl", "model=mini_vit", f"method={name}",
           *(["method.rule=prograd"] if rule else []), "setting=base2new", "shots=2", "trainer.max_epochs=2",
           f"data_root={tmp_path / 'data'}", f"output_root={tmp_path / 'out'}", f"cache_root={tmp_path / 'cache'}"]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (res_path,) = [p for p in (tmp_path / "out").rglob("results.json") if "evals" not in p.parts]
    res = json.loads(res_path.read_text())
    label = f"{name}+prograd" if rule else name
    assert res["method"] == label and res["backbone"] == VIT and res["dataset"].startswith("mini_")
    assert res["train"]["steps"] > 0 and res["n_classes"] == 5 and res["extras"] == {"trainer.max_epochs": 2}
    # (the rule and the model's prompt depth are the recipe; the shortened schedule is this run's only change)
    assert [e["subsample"] for e in res["evals"]] == ["new"]
    assert not (tmp_path / "cache" / "features").exists() or not any((tmp_path / "cache" / "features").iterdir())
