"""Every text-encoding path equals the plain 77-token encoding (features and gradients)."""

from __future__ import annotations

import pytest
import torch

from prograd_pl.models.prompt_learner import PromptError, PromptLearner
from prograd_pl.models.zeroshot import zeroshot_text_features

NAMES = ["cat", "golden_retriever", "st. bernard", "Sea or Lake", "a very long class name with words", "x"]
COMMA = "a type of pet, a photo of a {}."


def learner(backbone, position, csc, init="random", template="a photo of a {}.", n_ctx=16):
    torch.manual_seed(0)
    pl = PromptLearner(backbone, NAMES, n_ctx=n_ctx, init=init, csc=csc, position=position, template=template,
                       phrase="a photo of a")  # fmt: skip
    with torch.no_grad():  # random, non-degenerate context everywhere
        pl.ctx.add_(torch.randn_like(pl.ctx) * 0.3)
    return pl


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_fast_paths_equal_plain(tiny_backbone, position, csc):
    pl = learner(tiny_backbone, position, csc)
    plain = pl("plain")
    assert plain.shape == (len(NAMES), 32)
    assert (pl("truncated") - plain).abs().max() <= 1e-5
    auto = pl.resolve_encoding("auto")
    assert auto == ("shared_prefix" if (position == "end" and not csc) else "truncated")
    assert (pl("auto") - plain).abs().max() <= 1e-5


@pytest.mark.parametrize("template", ["a photo of a {}.", COMMA])
def test_shared_prefix_features_and_gradient(tiny_backbone, template):
    pl = learner(tiny_backbone, "end", False, init="template", template=template)
    w = torch.randn(len(NAMES), 32)
    grads = {}
    for mode in ("plain", "shared_prefix"):
        pl.ctx.grad = None
        out = pl(mode)
        (out * w).sum().backward()
        grads[mode] = (out.detach(), pl.ctx.grad.clone())
    assert (grads["plain"][0] - grads["shared_prefix"][0]).abs().max() <= 1e-5
    assert (grads["plain"][1] - grads["shared_prefix"][1]).abs().max() <= 1e-5
    assert grads["plain"][1].abs().max() > 0


def test_plain_path_is_clips_encode_text(tiny_backbone):
    # With template init and n_ctx = words, the prompt is the template token for token.
    pl = PromptLearner(tiny_backbone, NAMES, n_ctx=4, init="template", template="a photo of a {}.")
    ids = tiny_backbone.tokenizer([f"a photo of a {n.replace('_', ' ')}." for n in NAMES])
    ref = tiny_backbone.model.encode_text(ids)
    assert (pl("plain") - ref).abs().max() <= 1e-6
    zs = zeroshot_text_features(tiny_backbone, NAMES, "a photo of a {}.")
    assert (zs - torch.nn.functional.normalize(ref, dim=-1)).abs().max() <= 1e-5


def test_template_init_keeps_reference_word_count_quirk(tiny_backbone):
    # 8 words but 9 BPE tokens: the last token ("a") lands in the frozen suffix, 8 zero vectors lead.
    pl = PromptLearner(tiny_backbone, ["beagle"], n_ctx=16, init="template", template=COMMA)
    emb = tiny_backbone.text.token_embedding.weight
    ids = tiny_backbone.tokenizer(["a type of pet , a photo of a beagle."])[0]
    assert torch.equal(pl.ctx[:8], torch.zeros(8, 32))
    assert torch.allclose(pl.ctx[8:], emb[ids[1:9]])
    assert torch.allclose(pl.token_suffix[0, 0], emb[ids[9]])  # "a"
    assert pl.name_lens == [1 + 1]


def test_prompt_options_are_checked(tiny_backbone):
    with pytest.raises(PromptError, match="n_ctx=3 is smaller than the 4 words"):
        PromptLearner(tiny_backbone, NAMES, n_ctx=3, init="template", template="a photo of a {}.")
    with pytest.raises(PromptError, match="csc=true cannot be combined"):
        PromptLearner(tiny_backbone, NAMES, init="template", csc=True)
    with pytest.raises(PromptError, match="position='left'"):
        PromptLearner(tiny_backbone, NAMES, position="left")
    with pytest.raises(PromptError, match="init='zeros'"):
        PromptLearner(tiny_backbone, NAMES, init="zeros")
    with pytest.raises(PromptError, match="shared_prefix needs a generic context"):
        learner(tiny_backbone, "middle", False)("shared_prefix")


def test_phrase_init_uses_phrase_tokens(tiny_backbone):
    pl = PromptLearner(tiny_backbone, NAMES, n_ctx=16, init="phrase", phrase="a photo of a", csc=True)
    assert pl.n_ctx == 4 and pl.ctx.shape == (len(NAMES), 4, 32)
    emb = tiny_backbone.text.token_embedding.weight
    ids = tiny_backbone.tokenizer(["a photo of a"])[0][1:5]
    assert torch.allclose(pl.ctx[2], emb[ids])
