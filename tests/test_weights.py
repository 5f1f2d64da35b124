"""Weights: OpenAI-style TorchScript archives accepted only with the published SHA-256 (checked before any
unpickling), hand-placed files for tags, and one quick sentence when a tag's weights are not on this machine."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.pretrained import _PRETRAINED, _pcfg

from prograd_pl.__main__ import cli
from prograd_pl.errors import BackboneError
from prograd_pl.models import weights
from prograd_pl.models.backbone import load_backbone, register_model_configs

TINY = "prograd-tiny"


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    """The same random weights of the tiny model as a torch.save state dict and as a TorchScript archive."""
    register_model_configs()
    folder = tmp_path_factory.mktemp("tiny_weights")
    state = torch.random.get_rng_state()
    torch.manual_seed(7)
    try:
        model = open_clip.create_model(TINY, pretrained=None).eval()
    finally:
        torch.random.set_rng_state(state)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    image = torch.randn(2, 3, size, size)
    text = open_clip.get_tokenizer(TINY)(["a photo of a cat", "a dog"])
    script = torch.jit.trace_module(
        model, {"encode_image": (image,), "encode_text": (text,)}, check_trace=False
    )
    files = {"state": folder / "tiny_state.pt", "script": folder / "tiny.pt"}
    torch.save(model.state_dict(), files["state"])
    script.save(str(files["script"]))
    return files


def register(monkeypatch: pytest.MonkeyPatch, sha256: str) -> None:
    """Give the tiny model an `openai` tag in open_clip's registry, its SHA-256 in the URL as OpenAI's URLs have."""
    url = f"https://openaipublic.azureedge.net/clip/models/{sha256}/tiny.pt"
    monkeypatch.setitem(_PRETRAINED, TINY, {"openai": _pcfg(url=url, quick_gelu=True)})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def features(backbone) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    image = torch.randn(3, 3, backbone.image_size, backbone.image_size, generator=g)
    text = backbone.tokenizer(["a photo of a fox", "an owl", "a jay"])
    with torch.no_grad():
        return backbone.model.encode_image(image), backbone.model.encode_text(text)


def test_torchscript_with_the_published_hash_loads_the_same_weights(tiny_files, monkeypatch) -> None:
    assert weights.is_torchscript(tiny_files["script"]) and not weights.is_torchscript(tiny_files["state"])
    register(monkeypatch, sha256(tiny_files["script"]))
    from_script = load_backbone(TINY, str(tiny_files["script"]))
    from_state = load_backbone(TINY, str(tiny_files["state"]))
    for a, b in zip(features(from_script), features(from_state)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    random = load_backbone(TINY, None)
    assert not torch.equal(features(random)[0], features(from_state)[0])


def test_torchscript_with_another_hash_is_refused_before_unpickling(tiny_files, monkeypatch) -> None:
    register(monkeypatch, "0" * 64)
    calls = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: calls.append("jit.load"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append("load"))
    with pytest.raises(BackboneError) as info:
        load_backbone(TINY, str(tiny_files["script"]))
    text = str(info.value)
    assert (
        "\n" not in text
        and "does not match OpenAI's published checkpoint" in text
        and "nothing was loaded" in text
    )
    assert str(tiny_files["script"]) in text and calls == []
    monkeypatch.setitem(_PRETRAINED, TINY, {})  # no published file at all: refused the same way
    with pytest.raises(BackboneError, match="open_clip lists no such file"):
        load_backbone(TINY, str(tiny_files["script"]))
    assert calls == []


def test_command_line_refusal_is_the_last_line(tiny_files, tmp_path: Path) -> None:
    """A TorchScript file for RN50 that is not OpenAI's: exit 1, the last line says the SHA-256 does not match."""
    import subprocess
    import sys

    from data_trees import build_folder_tree

    tree = build_folder_tree(tmp_path / "tree", per_class=5)
    proc = subprocess.run(
        [sys.executable, "-m", "prograd_pl", "dataset=folder", f"dataset.path={tree}", "model=rn50",
         f"model.pretrained={tiny_files['script']}", f"output_root={tmp_path / 'out'}", "logger=none"],
        capture_output=True, text=True, check=False, timeout=120,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("prograd_pl: error: model.pretrained=")
        and "SHA-256" in last
        and "does not match" in last
    )


def test_tag_found_by_hand_placed_file(tiny_files, tmp_path: Path, monkeypatch) -> None:
    register(monkeypatch, sha256(tiny_files["script"]))
    monkeypatch.setenv("PROGRAD_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights.hand_placed_path(TINY, "openai") == tmp_path / "tiny.pt"
    with pytest.raises(BackboneError, match="not on this machine and the hub is offline"):
        load_backbone(TINY, "openai")
    (tmp_path / "tiny.pt").write_bytes(b"PK\x03\x04 something else")
    with pytest.raises(BackboneError, match="its SHA-256 does not match"):
        load_backbone(TINY, "openai")
    (tmp_path / "tiny.pt").write_bytes(tiny_files["script"].read_bytes())
    expected = features(load_backbone(TINY, str(tiny_files["state"])))
    for a, b in zip(features(load_backbone(TINY, "openai")), expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_offline_tag_ends_at_once_with_one_sentence(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROGRAD_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(BackboneError) as info:
        load_backbone("RN50-quickgelu", "openai")
    assert time.monotonic() - start < 2
    text = str(info.value)
    assert "\n" not in text and "RN50.pt" in text and f"put it at {tmp_path / 'RN50.pt'}" in text
    with pytest.raises(BackboneError, match="neither a file nor a tag of RN50-quickgelu"):
        load_backbone("RN50-quickgelu", "openia")
    with pytest.raises(BackboneError, match="is not a file"):
        load_backbone(TINY, str(tmp_path / "missing.pt"))


def test_weights_where(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PROGRAD_WEIGHTS", str(tmp_path))
    assert cli(["weights", "where", "RN50-quickgelu", "openai"]) == 0
    out = capsys.readouterr().out
    assert "https://openaipublic.azureedge.net/clip/models/afeb0e10" in out
    assert f"place it at: {tmp_path / 'RN50.pt'} (absent" in out and "timm/resnet50_clip.openai" in out
    assert cli(["weights", "where", "RN50-quickgelu", "nope"]) == 1
    assert "not a tag of RN50-quickgelu" in capsys.readouterr().err
    assert cli(["weights"]) == 2
