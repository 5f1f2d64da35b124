"""On-disk cache of frozen test-set image features.

The image tower is frozen and test transforms are deterministic, so a test set's features depend only on the
backbone (architecture + weights), the list of images, the transform and the precision: the 15 runs of a
dataset's few-shot grid (5 shots x 3 seeds) and every method share one encoding.  Any change of a key part gives a
new key; entries are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from prograd_pl.atomic import atomic_open

log = logging.getLogger("prograd_pl")


def weights_fingerprint(pretrained: str | None) -> str:
    """Identify weights: a tag as is, a local file by size, mtime and a hash of its first MiB."""
    if pretrained is None:
        return "random"
    path = Path(str(pretrained))
    if path.is_file():
        stat = path.stat()
        with path.open("rb") as fh:
            head = hashlib.sha256(fh.read(1 << 20)).hexdigest()[:16]
        return f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}:{head}"
    return str(pretrained)


def feature_key(parts: dict[str, Any], items: Sequence[tuple[str, int]]) -> str:
    """Stable key of the key parts and the (path, label) list of the test set."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for path, label in items:
        h.update(f"{path}\t{label}\n".encode())
    return h.hexdigest()[:32]


_WARNED: set[str] = set()


class FeatureCache:
    """Folder of ``<key>.pt`` files, each ``{"features": [N, D] float32, "labels": [N], "parts": {...}}``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            return blob["features"], blob["labels"]
        except Exception:  # a damaged entry is recomputed, never trusted
            return None

    def store(self, key: str, features: torch.Tensor, labels: torch.Tensor, parts: dict[str, Any]) -> None:
        """Write an entry; a cache that cannot be written only warns (the features were computed anyway)."""
        try:
            with atomic_open(self.path(key), "wb") as fh:
                torch.save({"features": features.cpu(), "labels": labels.cpu(), "parts": parts}, fh)
        except (OSError, RuntimeError) as err:  # torch.save's own writer reports a full disk as a RuntimeError
            if str(self.root) not in _WARNED:  # one line per cache folder, however many entries fail
                first = next((ln for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
                log.warning("feature cache %s cannot be written (%s); continuing without the cache", self.root,
                            first.strip())  # fmt: skip
            _WARNED.add(str(self.root))

    def get_or_compute(
        self,
        parts: dict[str, Any],
        items: Sequence[tuple[str, int]],
        compute: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Cached ``(features, labels)`` for this key, computing and storing them on a miss; ``hit`` flag last."""
        key = feature_key(parts, items)
        cached = self.load(key)
        if cached is not None:
            return cached[0], cached[1], True
        feats, labels = compute()
        self.store(key, feats, labels, parts)
        return feats, labels, False
