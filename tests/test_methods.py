"""Methods as classes: each config names its own class, nothing in src/ tests a method's name, and a new method is
one class plus its options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch.nn.functional as F
from conftest import compose, small_overrides
from data_trees import build_tree
from hydra.utils import get_class

from prograd_pl.app.config import check, resolve
from prograd_pl.app.run import run
from prograd_pl.errors import ConfigError
from prograd_pl.methods.base import PromptMethod

SRC = Path(__file__).resolve().parents[1] / "src"


class SmoothCoOp(PromptMethod):
    """The README's worked example: CoOp's context with a label-smoothed cross-entropy."""

    def __init__(self, *args, smoothing: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        self.smoothing = float(smoothing)

    def task_loss(self, logits, text, image, labels):
        loss = F.cross_entropy(logits, labels, label_smoothing=self.smoothing)
        return loss, {"ce": loss}


def test_each_method_config_names_its_own_class():
    targets = {m: str(compose([f"method={m}"]).method._target_) for m in ("coop", "cocoop", "kgcoop", "kd")}
    assert len(set(targets.values())) == 4
    for target in targets.values():
        assert issubclass(get_class(target), PromptMethod)


def test_nothing_in_src_tests_a_method_name():
    pattern = re.compile(r"method *(==|!=) *['\"]|method in \(['\"]")
    hits = [f"{p}:{i}" for p in SRC.rglob("*.py") for i, line in enumerate(p.read_text().splitlines(), 1)
            if pattern.search(line)]  # fmt: skip
    assert hits == []


def test_a_new_method_is_one_class_and_its_options(tmp_path):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    overrides = small_overrides(tmp_path, "dataset=dtd", "shots=1", "method=coop",
                                f"method._target_={__name__}.SmoothCoOp", "+method.smoothing=0.2")  # fmt: skip
    res = run(compose([*overrides, "method.rule=prograd"]))
    assert res["method"] == "coop+prograd" and res["train"]["steps"] > 0
    assert res["config"]["method"]["smoothing"] == 0.2
    with pytest.raises(ConfigError, match="did you mean method.smoothing"):
        check(resolve(compose([*overrides[:-1], "+method.smoothng=0.2"])))


def test_app_modules_import_in_one_direction():
    """components builds on devices; devices never reaches back into components (the former import circle)."""
    devices = (SRC / "prograd_pl" / "app" / "devices.py").read_text()
    assert "prograd_pl.app.components" not in devices
