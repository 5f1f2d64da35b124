"""Backbone loading: open_clip architectures by name, clear refusals."""

from __future__ import annotations

import pytest
import torch

from prograd_pl.models.backbone import BackboneError, load_backbone, text_tower


def test_unavailable_tag_names_the_tag_and_the_local_file_option():
    with pytest.raises(BackboneError, match=r"could not obtain weights 'openai'.*model.pretrained=/path"):
        load_backbone("RN50-quickgelu", "openai")


def test_unknown_architecture_and_missing_file():
    with pytest.raises(BackboneError, match="model.name='NoSuchNet'"):
        load_backbone("NoSuchNet", None)
    with pytest.raises(BackboneError, match="is not a file"):
        load_backbone("prograd-tiny", "/nonexistent/weights.pt")


def test_local_checkpoint_goes_through_open_clip(tmp_path, tiny_backbone):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_backbone.model.state_dict(), path)
    bb = load_backbone("prograd-tiny", str(path))
    for (k, a), b in zip(tiny_backbone.model.state_dict().items(), bb.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert not bb.model.training and not any(p.requires_grad for p in bb.model.parameters())


def test_text_tower_without_prompt_embeddings_is_refused():
    class HFLike(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.text = torch.nn.Linear(2, 2)

    with pytest.raises(BackboneError, match="cannot take prompt embeddings"):
        text_tower(HFLike(), "hf-model")
