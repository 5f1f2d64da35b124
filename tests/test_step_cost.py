"""The training step's GPU-cost proxies, counted on the CPU (benchmarks/op_count.py): no host synchronisation
inside Lightning's ``training_step``, and a number of kernel ops that does not grow with the classes."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import method_module, random_images
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from op_count import CountOps, count_ops, graph_breaks  # noqa: E402

from prograd_pl.models.prompt_learner import PromptLearner  # noqa: E402

TEMPLATE = "a photo of a {}."
NAMES = ["cat", "golden retriever", "st. bernard", "sea or lake", "a very long class name with words", "x", "dog"]


def _names(n: int) -> list[str]:
    return [f"{NAMES[i % len(NAMES)]} {i}" for i in range(n)]


class CountedSteps(L.Callback):
    """Counts the ops and syncs of each ``training_step`` (the hook itself, optimizer step and logging included)."""

    def __init__(self) -> None:
        self.counts = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.mode = CountOps()
        self.mode.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.mode.__exit__(None, None, None)
        self.counts.append(self.mode.counts)


def _fit(module, n_images: int = 4, steps: int = 3, **trainer_kwargs):
    backbone_images = random_images(module.method.backbone, n_images, seed=0)
    labels = torch.arange(n_images) % module.n_classes
    counter = CountedSteps()
    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False,
        callbacks=[counter], log_every_n_steps=2, **trainer_kwargs,
    )  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(backbone_images, labels), batch_size=2))
    return counter.counts


@pytest.mark.parametrize(
    "method, rule, backward",
    [("prograd", "none", "twin"), ("prograd", "none", "sequential"), ("coop", "none", "auto"),
     ("kd", "none", "auto"), ("kgcoop", "prograd", "auto")],
)  # fmt: skip
def test_training_step_reads_nothing_back(tiny_backbone, method, rule, backward):
    pl = PromptLearner(tiny_backbone, NAMES, n_ctx=4, init="template", template=TEMPLATE)
    module = method_module(tiny_backbone, pl, method=method, rule=rule, template=TEMPLATE, max_epochs=1)
    module.backward = backward
    counts = _fit(module)  # the default progress bar on; logging every 2 steps
    assert len(counts) == 3
    # the one read per logging interval (the non-finite record) happens after the step, in on_train_batch_end
    assert [c.syncs for c in counts] == [0, 0, 0], [dict(c.sync_ops) for c in counts]
    assert counts[0].ops > 100  # the counter saw the step


@pytest.mark.parametrize("backward", ["twin", "sequential"])
def test_step_op_count_does_not_grow_with_the_classes(tiny_backbone, backward):
    from steps import Case, our_step

    ops = {}
    for n in (20, 200):  # (a bucket of one prompt would skip its broadcast's sums: fewer ops, not more)
        torch.manual_seed(0)
        learner = PromptLearner(tiny_backbone, _names(n), n_ctx=4, init="template", template=TEMPLATE)
        images = random_images(tiny_backbone, 2, seed=1)
        case = Case(tiny_backbone, learner, images, torch.tensor([0, 1]), torch.device("cpu"))
        step = our_step(case, "prograd", backward=backward)
        step()
        counts = count_ops(step)
        assert counts.syncs == 0, dict(counts.sync_ops)
        ops[n] = counts.ops
    assert ops[200] == ops[20], ops


def test_bf16_step_casts_no_frozen_weight(tiny_backbone):
    from steps import Case, our_step

    learner = PromptLearner(tiny_backbone, NAMES, n_ctx=4, init="template", template=TEMPLATE)
    case = Case(tiny_backbone, learner, random_images(tiny_backbone, 2, seed=1), torch.tensor([0, 1]),
                torch.device("cpu"))  # fmt: skip
    step = our_step(case, "prograd", precision="bf16", backward="twin")
    step()
    counts = count_ops(step)
    n_weights = sum(1 for _ in tiny_backbone.model.parameters())
    assert counts.casts <= 30 < n_weights, counts.casts  # autocast would cast every weight it meets, per call
    assert counts.syncs == 0


@pytest.mark.parametrize("precision", [None, torch.bfloat16])
def test_step_forward_part_compiles_without_graph_break(tiny_backbone, precision):
    """Text encoder on two contexts, logits and both losses: one graph for torch.compile(fullgraph=True)."""
    pl = PromptLearner(tiny_backbone, NAMES, n_ctx=4, init="template", template=TEMPLATE)
    module = method_module(tiny_backbone, pl, method="prograd", template=TEMPLATE, max_epochs=1,
                           mixed_dtype=precision)  # fmt: skip
    images = random_images(tiny_backbone, 2, seed=1)
    twins = pl.ctx.detach().unsqueeze(0).repeat(2, 1, 1).requires_grad_(True)
    args = (twins, module.image_features(images), torch.tensor([0, 1]), module.method.teacher())
    module.forward_part(*args)  # the eager call checks the cast tower; the graph then takes it as is
    assert graph_breaks(module.forward_part, *args) == (1, 0)


@pytest.mark.slow  # about 70 s on 2 cores, mostly inductor's compile
def test_compiled_step_equals_eager_step(tiny_backbone):
    """``compile=default``: the twin forward part compiles as one graph (fullgraph) and gives the eager step (up
    to float summation order: inductor fuses and reorders, so 1e-5 relative to the context's values)."""
    from conftest import fit_one_step

    images = random_images(tiny_backbone, 4, seed=2)
    labels = torch.tensor([0, 1, 2, 3])
    ctx = {}
    for mode in ("none", "default"):
        torch.manual_seed(0)
        pl = PromptLearner(tiny_backbone, NAMES, n_ctx=4, init="template", template=TEMPLATE)
        module = method_module(tiny_backbone, pl, method="prograd", template=TEMPLATE, max_epochs=1, lr=0.5,
                              warmup_epochs=0)  # fmt: skip
        module.backward = "twin"
        module.set_compile(mode)
        fit_one_step(module, images, labels)
        ctx[mode] = pl.ctx.detach().clone()
    init = PromptLearner(tiny_backbone, NAMES, n_ctx=4, init="template", template=TEMPLATE).ctx.detach()
    assert (ctx["none"] - init).abs().max() > 1e-3
    assert (ctx["default"] - ctx["none"]).abs().max() <= 1e-5 * float(ctx["none"].abs().max())
