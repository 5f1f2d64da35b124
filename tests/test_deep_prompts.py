"""Deep prompts in both towers (IVLP) on a tiny random ViT: depth 1 is the shallow prompt, a deep prompt equal to
the hidden states it replaces changes nothing, the step's gradients are those of the plain loss, the rule with no
conflict is the method alone, and a run's checkpoint evaluates identically and leaves the feature cache alone."""

from __future__ import annotations

import functools
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import compose, small_overrides
from data_trees import build_tree

from prograd_pl.app.run import run
from prograd_pl.methods.ivlp import IVLP
from prograd_pl.methods.maple import MaPLe
from prograd_pl.methods.module import PromptModule
from prograd_pl.methods.rule import ProGradRule
from prograd_pl.models.backbone import load_backbone
from prograd_pl.models.checkpoint import CHECKPOINT_NAME
from prograd_pl.models.deep_prompt import CoupledPromptLearner, DeepPromptLearner
from prograd_pl.models.prompt_learner import PromptLearner

NAMES = ["airplane", "bear", "car", "dog", "elephant"]
TEMPLATE = "a photo of a {}."


@pytest.fixture(scope="module")
def vit():
    state = torch.random.get_rng_state()
    torch.manual_seed(3)
    try:
        return load_backbone("prograd-tiny-vit", None)
    finally:
        torch.random.set_rng_state(state)


def learner(backbone, seed: int = 0, **depths) -> DeepPromptLearner:
    opts = {"text_depth": 3, "vision_tokens": 2, "vision_depth": 3, **depths}
    return DeepPromptLearner(backbone, NAMES, generator=torch.Generator().manual_seed(seed), **opts)


def images(backbone, n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, backbone.image_size, backbone.image_size, generator=torch.Generator().manual_seed(seed))


def test_depth_one_is_the_shallow_prompt_and_no_vision_prompt_is_clip(vit):
    deep = learner(vit, text_depth=1, vision_depth=0)
    shallow = PromptLearner(vit, NAMES, n_ctx=4, init="phrase", phrase="a photo of a")
    shallow.ctx.data.copy_(deep.ctx.data)
    with torch.no_grad():
        assert (deep() - shallow("plain")).abs().max() <= 1e-5
        x = images(vit)
        assert (deep.encode_image(vit.model.visual, x) - vit.model.encode_image(x)).abs().max() <= 1e-5
    assert deep.learned_parameters() == [deep.ctx]


def test_a_deep_vision_prompt_equal_to_what_it_replaces_changes_nothing(vit):
    pl = learner(vit, vision_depth=1)
    x = images(vit)
    seen = []
    block0 = vit.model.visual.transformer.resblocks[0]
    hook = block0.register_forward_hook(lambda m, i, out: seen.append(out.detach()))
    with torch.no_grad():
        one = pl.encode_image(vit.model.visual, x)
    hook.remove()
    # depth 2 whose second set is block 0's output at the prompt positions (the same for every image: one image)
    two = learner(vit, vision_depth=2)
    two.vision_prompts[0].data.copy_(pl.vision_prompts[0].data)
    two.vision_prompts[1].data.copy_(seen[0][0, -2:])
    with torch.no_grad():
        assert (two.encode_image(vit.model.visual, x[:1]) - one[:1]).abs().max() <= 1e-5
        assert (two.encode_image(vit.model.visual, x[1:2]) - one[1:2]).abs().max() > 1e-4  # per image otherwise


def ivlp_module(backbone, pl, rule=None):
    method = IVLP(backbone, NAMES, template=TEMPLATE, prompt=pl)
    return PromptModule(method, rule=rule, optim=functools.partial(torch.optim.SGD, lr=0.01))


def test_ivlp_gradients_are_the_plain_losses_gradients(vit):
    pl = learner(vit)
    module = ivlp_module(vit, pl)
    x, labels = images(vit), torch.tensor([0, 1, 2, 3])
    grads, logs = module.compute_update(x, labels)
    # the plain computation: both towers with their prompts, one loss, one autograd call
    img = F.normalize(pl.encode_image(vit.model.visual, x), dim=-1)
    text = F.normalize(pl(), dim=-1)
    loss = F.cross_entropy(vit.model.logit_scale.exp() * img @ text.t(), labels)
    ref = torch.autograd.grad(loss, pl.learned_parameters())
    assert len(grads) == len(ref) == 1 + 2 + 3  # ctx, two deep text sets, three vision sets
    for g, r in zip(grads, ref):
        assert (g - r).abs().max() <= 1e-5 * max(1.0, float(r.abs().max()))
        assert r.abs().max() > 0
    assert abs(float(logs["loss_ce"]) - float(loss)) <= 1e-5


def test_the_rule_without_a_conflict_is_the_method_alone(vit):
    x = images(vit, seed=5)
    for seed in range(30):
        labels = torch.randint(0, len(NAMES), (4,), generator=torch.Generator().manual_seed(seed))
        ruled = ivlp_module(vit, learner(vit), rule=ProGradRule(scope="vector"))
        grads, logs = ruled.compute_update(x, labels)
        if not bool(logs["conflict"]):
            break
    else:
        pytest.fail("no labelling without a conflict")
    alone, _ = ivlp_module(vit, learner(vit)).compute_update(x, labels)
    assert all(torch.equal(g, a) for g, a in zip(grads, alone))


@pytest.mark.parametrize(
    ("method", "depths"),
    [("ivlp", ["method.prompt.text_depth=2", "method.prompt.vision_depth=2", "method.prompt.vision_tokens=2"]),
     ("maple", ["method.prompt.depth=2"]),
     ("promptsrc", ["method.prompt.text_depth=2", "method.prompt.vision_depth=2", "method.templates=3",
                    "method.gpa_mean=1", "trainer.max_epochs=2"])],
)  # fmt: skip
def test_a_deep_prompt_run_reloads_identically_and_leaves_the_feature_cache_alone(tmp_path, method, depths):
    build_tree("dtd", tmp_path / "data", n_classes=4)
    base = [o for o in small_overrides(tmp_path, "dataset=dtd", "shots=1") if o != "model=tiny"]
    opts = ["model=tiny_vit", f"method={method}", *depths, "data.batch_size=4"]
    res = run(compose([*base, *opts, "method.rule=prograd"]))
    assert res["method"] == f"{method}+prograd" and res["train"]["steps"] > 0
    assert not (tmp_path / "cache" / "features").exists() or not any((tmp_path / "cache" / "features").iterdir())
    assert json.loads((tmp_path / "out" / res["run_dir"] / "results.json").read_text())["method"] == res["method"]
    ckpt = f"{res['run_dir']}/{CHECKPOINT_NAME}"
    again = run(compose([*base, *opts, "method.rule=prograd", f"ckpt={ckpt}", f"output_root={tmp_path / 'eval'}"]))
    assert again["train"]["epochs"] == 0
    assert again["metrics"]["acc"] == res["metrics"]["acc"]
    assert again["metrics"]["per_class_acc"] == res["metrics"]["per_class_acc"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(["model=tiny"], "prompts the image tower of a ViT"),
     (["model=tiny_vit", "method.prompt.vision_depth=9"], "vision_depth=9 but model.name=prograd-tiny-vit has 3")],
)  # fmt: skip
def test_deep_prompts_that_cannot_fit_the_model_are_one_sentence(overrides, message):
    from prograd_pl.app.config import check, resolve
    from prograd_pl.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        check(resolve(compose(["method=ivlp", "method.prompt.text_depth=2", *overrides])))


def test_maple_learns_two_tokens_and_keeps_the_rest_of_its_phrase_as_text(vit):
    pl = CoupledPromptLearner(vit, NAMES, n_ctx=2, depth=1, generator=torch.Generator().manual_seed(0))
    assert pl.n_ctx == 2 and pl.learned_parameters()[0].shape == (2, vit.text.width)
    with torch.no_grad():  # "a photo" learned from its own embeddings, "of a" fixed: CLIP's own prompt at the start
        clip = vit.model.encode_text(vit.tokenizer([f"a photo of a {n}." for n in NAMES]))
        assert (pl() - clip).abs().max() <= 1e-5


def test_maple_vision_prompts_map_the_text_prompts_and_both_towers_train_them(vit):
    pl = CoupledPromptLearner(vit, NAMES, depth=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(pl.couplings[1].weight, pl.couplings[2].weight)  # the deep maps start as copies
    assert not torch.equal(pl.couplings[0].weight, pl.couplings[1].weight)
    module = PromptModule(MaPLe(vit, NAMES, template=TEMPLATE, prompt=pl),
                          optim=functools.partial(torch.optim.SGD, lr=0.01))  # fmt: skip
    x, labels = images(vit), torch.tensor([0, 1, 2, 3])
    grads, _ = module.compute_update(x, labels)
    img = F.normalize(pl.encode_image(vit.model.visual, x), dim=-1)
    text = F.normalize(pl(), dim=-1)
    loss = F.cross_entropy(vit.model.logit_scale.exp() * img @ text.t(), labels)
    ref = torch.autograd.grad(loss, pl.learned_parameters(), retain_graph=True)
    for g, r in zip(grads, ref):
        assert (g - r).abs().max() <= 1e-5 * max(1.0, float(r.abs().max()))
    # the deep text prompt of block 1 gets gradient from the image tower too (through F_1), not only the text's
    text_only = torch.autograd.grad(F.cross_entropy(vit.model.logit_scale.exp() * img.detach() @ text.t(), labels),
                                    pl.text_prompts[0])[0]  # fmt: skip
    assert (ref[1] - text_only).abs().max() > 1e-6


def test_gpa_weights_are_the_recipes_gaussian():
    from prograd_pl.methods.promptsrc import gpa_weights

    w = gpa_weights(20, 15.0, 1.0)
    assert [round(x, 3) for x in w[12:17]] == [0.054, 0.242, 0.399, 0.242, 0.054]
    assert abs(sum(w) - 1.0) < 1e-12 and max(w[:10]) < 0.005


def promptsrc(vit, **kw):
    from prograd_pl.methods.promptsrc import PromptSRC

    return PromptSRC(vit, NAMES, template=TEMPLATE, prompt=learner(vit), **kw)


def test_promptsrc_loss_and_gradients_are_the_hand_written_ones(vit):
    method = promptsrc(vit, templates=5)
    module = PromptModule(method, optim=functools.partial(torch.optim.SGD, lr=0.01))
    x, labels = images(vit, seed=9), torch.tensor([0, 1, 2, 4])
    grads, logs = module.compute_update(x, labels)
    pl, clip, scale = method.prompt_learner, vit.model, vit.model.logit_scale.exp()
    with torch.no_grad():  # the frozen targets, by hand: 5 templates averaged un-normalised; the plain image tower
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        per_template = [clip.encode_text(vit.tokenizer([t(n) for n in NAMES])) for t in OPENAI_IMAGENET_TEMPLATES[:5]]
        g = F.normalize(torch.stack(per_template).mean(0), dim=-1)
        f0 = F.normalize(clip.encode_image(x), dim=-1)
    img = F.normalize(pl.encode_image(clip.visual, x), dim=-1)
    text = F.normalize(pl(), dim=-1)
    logits = scale * img @ text.t()
    p0 = F.softmax(scale * f0 @ g.t(), dim=-1)
    kl = (p0 * (p0.log() - F.log_softmax(logits, dim=-1))).sum() / logits.numel()
    loss = F.cross_entropy(logits, labels) + 25 * (text - g).abs().mean() + 10 * (img - f0).abs().mean() + kl
    ref = torch.autograd.grad(loss, pl.learned_parameters())
    assert abs(float(logs["loss_scl_kl"]) - float(kl)) <= 1e-6
    for got, want in zip(grads, ref):
        assert (got - want).abs().max() <= 1e-5 * max(1.0, float(want.abs().max()))


def test_promptsrc_under_the_rule_runs_the_frozen_image_tower_once_per_step(vit):
    """The image loss and the rule's teacher share one frozen pass of the batch; the step's gradients are those of
    a step that runs the frozen tower for each."""
    from prograd_pl.methods.promptsrc import PromptSRC

    class Counted(PromptSRC):
        passes = 0

        def frozen_image_features(self, images):
            Counted.passes += 1
            return super().frozen_image_features(images)

    class Twice(PromptSRC):  # the frozen features computed again for the teacher, as before the sharing
        def teacher_image_features(self, images):
            return self.frozen_image_features(images)

    x, labels = images(vit, seed=4), torch.tensor([0, 1, 2, 4])
    steps = []
    for cls in (Counted, Twice):
        method = cls(vit, NAMES, template=TEMPLATE, prompt=learner(vit), templates=3)
        module = PromptModule(method, rule=ProGradRule(), optim=functools.partial(torch.optim.SGD, lr=0.01))
        steps.append(module.compute_update(x, labels))
    assert Counted.passes == 1
    (shared, logs), (twice, logs_twice) = steps
    assert all(torch.equal(a, b) for a, b in zip(shared, twice))
    assert float(logs["loss_kl"]) == float(logs_twice["loss_kl"]) and bool(logs["conflict"]) == bool(logs_twice["conflict"])


def test_gaussian_aggregation_averages_the_epochs_and_survives_a_checkpoint(vit):
    from prograd_pl.methods.promptsrc import gpa_weights

    method = promptsrc(vit, gpa_mean=2.0, gpa_std=1.0)
    params = list(method.prompt_learner.parameters())
    seen = []
    for epoch in range(3):
        with torch.no_grad():
            for p in params:
                p.add_(1.0)
        seen.append([p.detach().clone() for p in params])
        method.end_of_epoch(epoch, 3)
        if epoch == 1:  # a checkpoint mid-run: a fresh method resumes from it
            state = method.training_state()
            resumed = promptsrc(vit, gpa_mean=2.0, gpa_std=1.0)
            resumed.load_training_state(state)
            with torch.no_grad():
                for p, q in zip(resumed.prompt_learner.parameters(), params):
                    p.copy_(q)
    with torch.no_grad():
        for p, q in zip(resumed.prompt_learner.parameters(), params):
            p.copy_(q)
    resumed.end_of_epoch(2, 3)
    w = gpa_weights(3, 2.0, 1.0)
    for m in (method, resumed):
        m.end_of_training()
        for i, p in enumerate(m.prompt_learner.parameters()):
            want = sum(w[e] * seen[e][i] for e in range(3))
            assert (p - want).abs().max() <= 1e-6
