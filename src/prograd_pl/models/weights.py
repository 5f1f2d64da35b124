"""Where a backbone's weights come from, checked before anything is loaded.

``model.pretrained`` is a tag of open_clip's registry (``openai``, ``laion2b_...``), a local file, ``mini:`` (the
project's own model) or nothing (random weights). Three rules keep loading safe and quick:

- **TorchScript archives** (OpenAI's own ``RN50.pt``, ``ViT-B-16.pt``) run code when loaded, so one is accepted
  only when its SHA-256 equals the one embedded in open_clip's registry URL for a tag of that model
  (``.../clip/models/<sha256>/RN50.pt``); the hash is computed from the file's bytes before any unpickling. Its
  weights are then copied into the open_clip model of that architecture.
- **A tag** is looked up on this machine first: a file placed by hand in the weights folder
  (``$PROGRAD_WEIGHTS``, else ``~/.cache/clip``, where OpenAI's ``clip`` package keeps them too), then the Hugging
  Face cache. Only when neither has it is the network asked, once: offline (``HF_HUB_OFFLINE=1``) or on the first
  network failure the load ends with one sentence naming the file and where to put it, not with the hub
  client's retries.
- ``prograd-pl weights where <model> <tag>`` prints the URL and the path where a hand-placed file is found.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prograd_pl.atomic import file_sha256
from prograd_pl.errors import BackboneError

_SHA_IN_URL = re.compile(r"/([0-9a-f]{64})/[^/]+$")
_OFFLINE_VALUES = ("1", "true", "yes", "on")
HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# OpenAI's TorchScript state dicts carry these three attributes beside the weights
_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")


def resolve_pretrained(pretrained: str | None) -> str | None:
    """``model.pretrained`` as open_clip takes it: None for random weights, a mini model's weights file for
    ``mini:`` / ``mini:vit``."""
    if pretrained in (None, "", "none", "None"):
        return None
    if pretrained.startswith("mini:"):
        from prograd_pl.mini.weights import mini_model, mini_weights_path

        return str(mini_weights_path(model=mini_model(pretrained).name))
    return pretrained


def looks_like_path(weights: str) -> bool:
    return (
        os.sep in weights
        or weights.endswith((".pt", ".pth", ".bin", ".safetensors"))
        or Path(weights).is_file()
    )


def weights_dir() -> Path:
    """Where hand-placed weight files are looked for: ``$PROGRAD_WEIGHTS``, else ``~/.cache/clip``."""
    return Path(os.environ.get("PROGRAD_WEIGHTS") or "~/.cache/clip").expanduser()


def offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``)."""
    return any(
        os.environ.get(k, "").strip().lower() in _OFFLINE_VALUES
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


# ---- open_clip's registry -----------------------------------------------------------------------------------
def pretrained_cfg(name: str, tag: str) -> dict[str, Any]:
    from open_clip.pretrained import get_pretrained_cfg

    return dict(get_pretrained_cfg(name, tag) or {})


def tags_of(name: str) -> list[str]:
    from open_clip.pretrained import list_pretrained_tags_by_model

    return list(list_pretrained_tags_by_model(name))


def published_sha256(name: str) -> dict[str, str]:
    """``{tag: sha256}`` for the tags of model ``name`` whose registry URL embeds the file's SHA-256 (OpenAI's)."""
    out = {}
    for tag in tags_of(name):
        match = _SHA_IN_URL.search(pretrained_cfg(name, tag).get("url") or "")
        if match:
            out[tag] = match.group(1)
    return out


# ---- files --------------------------------------------------------------------------------------------------
def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``code/`` or ``constants.pkl``), read from its
    member names only."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def check_torchscript(path: str | Path, name: str) -> str:
    """The tag whose published SHA-256 the TorchScript file ``path`` has; else BackboneError (nothing loaded)."""
    published = published_sha256(name)
    digest = file_sha256(path)
    for tag, sha in published.items():
        if digest == sha:
            return tag
    expected = (
        ", ".join(f"{t} {s[:12]}..." for t, s in published.items()) or "none: open_clip lists no such file"
    )
    raise BackboneError(
        f"model.pretrained={path} is a TorchScript archive whose SHA-256 ({digest[:12]}...) does not match OpenAI's "
        f"published checkpoint for model.name={name} (expected {expected}), so nothing was loaded; pass the "
        "original file or a state dict saved with torch.save."
    )


def load_torchscript(model: nn.Module, path: str | Path) -> None:
    """Copy the weights of a checked TorchScript archive into ``model`` (same architecture, same names)."""
    script = torch.jit.load(str(path), map_location="cpu")
    kept = set(model.state_dict())
    # buffers the model rebuilds itself (attention masks) are not weights
    transient = {n for n, _ in model.named_buffers()} - kept
    state = {k: v for k, v in script.state_dict().items() if k not in _NON_WEIGHT_KEYS and k not in transient}
    scale = getattr(model, "logit_scale", None)
    if "logit_scale" in state and scale is not None and state["logit_scale"].ndim != scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(scale.shape)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise BackboneError(
            f"the weights in {path} do not fit the open_clip model's architecture ({first})."
        ) from None


# ---- tags ---------------------------------------------------------------------------------------------------
def hand_placed_path(name: str, tag: str) -> Path | None:
    """Where a hand-placed file of (model, tag) is found: ``<weights folder>/<file name of the URL>``."""
    url = pretrained_cfg(name, tag).get("url") or ""
    return weights_dir() / os.path.basename(url) if url else None


def hub_file(name: str, tag: str) -> tuple[str, list[str]] | None:
    """(repo id, candidate file names) of the tag on the Hugging Face hub, or None."""
    hub = pretrained_cfg(name, tag).get("hf_hub") or ""
    if not hub:
        return None
    if hub.endswith("/"):  # open_clip's convention: a repo id with its default file names
        return hub.rstrip("/"), list(HF_FILES)
    repo, filename = os.path.split(hub)
    return repo, [filename]


def cached_hub_file(name: str, tag: str) -> str | None:
    """The tag's file in the Hugging Face cache, if it is there (no network)."""
    found = hub_file(name, tag)
    if found is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo, files = found
    for filename in files:
        hit = try_to_load_from_cache(repo, filename)
        if isinstance(hit, str) and os.path.isfile(hit):
            return hit
    return None


def local_tag_file(name: str, tag: str) -> str | None:
    """A hand-placed file of (model, tag) whose SHA-256 matches the published one (None if absent)."""
    path = hand_placed_path(name, tag)
    if path is None or not path.is_file():
        return None
    sha = published_sha256(name).get(tag)
    if sha is not None and file_sha256(path) != sha:
        raise BackboneError(
            f"{path} is not OpenAI's {os.path.basename(path)} for {name} (its SHA-256 does not match the published "
            "one); delete it or replace it with the original file."
        )
    return str(path)


def _reachable(url: str, timeout: float = 8.0) -> str | None:
    """None if ``url``'s host answers, else the reason (one attempt, no retries)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # the host answered
    except (urllib.error.URLError, OSError, ValueError) as err:
        return str(getattr(err, "reason", err))


def missing_tag(name: str, tag: str, why: str) -> BackboneError:
    """One sentence: the tag's weights are not here; which file to get and where to put it."""
    url = pretrained_cfg(name, tag).get("url") or ""
    place = hand_placed_path(name, tag)
    hub = hub_file(name, tag)
    get = url or (f"https://huggingface.co/{hub[0]}" if hub else f"the source of {name} {tag}")
    where = f"put it at {place}" if place else "pass it with model.pretrained=/path/to/file"
    return BackboneError(
        f"could not obtain weights '{tag}' of {name}: they are not on this machine and {why}; download {get} "
        f"elsewhere and {where} (or pass model.pretrained=/path/to/file)."
    )


def locate(name: str, pretrained: str | None) -> tuple[str, str | None]:
    """Where the weights ``pretrained`` names are, checked without loading anything:
    ``("none", None)``, ``("torchscript", path)`` (its SHA-256 checked), ``("file", path)`` (a state dict, loaded
    by open_clip with ``weights_only``) or ``("tag", tag)`` (cached by the hub client, or reachable).

    Raises BackboneError (one sentence) for a missing file, a TorchScript archive that is not OpenAI's, an unknown
    tag, or a tag whose weights are not on this machine when the hub is offline or unreachable.
    """
    weights = resolve_pretrained(pretrained)
    if weights is None:
        return "none", None
    if looks_like_path(weights):
        if not Path(weights).is_file():
            raise BackboneError(
                f"model.pretrained='{weights}' is not a file; expected a local checkpoint path."
            )
        if is_torchscript(weights):
            check_torchscript(weights, name)  # from the bytes, before any unpickling
            return "torchscript", weights
        return "file", weights
    if weights not in tags_of(name):
        tags = ", ".join(tags_of(name)) or "none"
        raise BackboneError(
            f"model.pretrained={weights} is neither a file nor a tag of {name} in open_clip's registry (its tags: "
            f"{tags})."
        )
    hand = local_tag_file(name, weights)
    if hand is not None:
        return ("torchscript" if is_torchscript(hand) else "file"), hand
    if cached_hub_file(name, weights) is None:
        if offline():
            raise missing_tag(name, weights, "the hub is offline (HF_HUB_OFFLINE=1)")
        from huggingface_hub import constants

        url = constants.ENDPOINT if hub_file(name, weights) else pretrained_cfg(name, weights).get("url", "")
        reason = _reachable(url) if url else None
        if reason is not None:
            raise missing_tag(name, weights, f"the network failed ({reason})")
    return "tag", weights


def preflight(name: str, pretrained: str | None) -> None:
    """Check that the weights can be had (see :func:`locate`) before a run imports and builds anything heavy."""
    from prograd_pl.models.backbone import register_model_configs

    register_model_configs()
    locate(name, pretrained)


def create_model(name: str, pretrained: str | None, device: str | torch.device = "cpu") -> nn.Module:
    """An open_clip model ``name`` with the weights ``pretrained`` names (found and checked by :func:`locate`)."""
    import open_clip

    kind, where = locate(name, pretrained)
    if kind == "torchscript":
        model = open_clip.create_model(name, pretrained=None, device="cpu")
        load_torchscript(model, where)
        return model.to(device)
    try:
        return open_clip.create_model(name, pretrained=where, device=device)
    except (RuntimeError, FileNotFoundError, OSError) as err:
        if kind != "tag":
            raise
        raise missing_tag(name, where, f"the download failed ({str(err).splitlines()[0][:200]})") from None


# ---- prograd-pl weights where -------------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    """``prograd-pl weights where <model> <tag>``: the URL and where a hand-placed file is found."""
    from prograd_pl.models.backbone import register_model_configs

    if len(argv) != 3 or argv[0] != "where":
        print("usage: prograd-pl weights where <model> <tag>   (e.g. RN50-quickgelu openai)", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    _, name, tag = argv
    register_model_configs()
    if tag not in tags_of(name):
        print(f"prograd_pl: error: {tag} is not a tag of {name} in open_clip's registry (its tags: "
              f"{', '.join(tags_of(name)) or 'none'}).", file=sys.stderr)  # fmt: skip
        return 1
    cfg = pretrained_cfg(name, tag)
    sha = published_sha256(name).get(tag)
    hub = hub_file(name, tag)
    place = hand_placed_path(name, tag)
    print(f"{name} {tag}")
    if cfg.get("url"):
        print(f"  url:        {cfg['url']}")
    if sha:
        print(f"  sha256:     {sha} (checked before loading)")
    if hub:
        print(f"  hub:        https://huggingface.co/{hub[0]} ({' or '.join(hub[1])})")
    if place:
        state = "present" if place.is_file() else "absent"
        print(f"  place it at: {place} ({state}; $PROGRAD_WEIGHTS changes the folder)")
    cached = cached_hub_file(name, tag)
    if cached:
        print(f"  hub cache:  {cached}")
    print("  or pass any local copy with model.pretrained=/path/to/file")
    return 0
