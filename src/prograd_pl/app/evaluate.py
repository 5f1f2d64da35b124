"""Evaluation of a method on one test split, with the on-disk cache of frozen test-set image features."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from prograd_pl.app.components import build_datamodule
from prograd_pl.data.base import DatasetError, DatasetSplits
from prograd_pl.models.feature_cache import FeatureCache, weights_fingerprint

log = logging.getLogger("prograd_pl")


def evaluate(module: Any, trainer: L.Trainer, cfg: DictConfig, splits: DatasetSplits, backbone: Any) -> dict[str, Any]:
    """Accuracy (top-1 %, micro), macro F1 and per-class accuracy of ``module`` on ``splits.test``."""
    if not splits.test:
        raise DatasetError(f"dataset {splits.name} has an empty test split.")
    loader = build_datamodule(cfg, [], splits.test, backbone).test_dataloader()
    method = getattr(module, "method", None)  # a method that prompts the image tower has no fixed features
    if cfg.feature_cache and not getattr(method, "prompts_image", False):
        feats, labels = cached_features(module, loader, cfg, splits, backbone)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(feats, labels),
                                             batch_size=cfg.data.test_batch_size)  # fmt: skip
    trainer.test(module, dataloaders=loader, verbose=False)
    res = dict(module.test_results)
    # percentages of a few thousand images: 4 decimals hold every digit that means something
    res["acc"] = round(res["acc"], 4)
    res["macro_f1"] = round(res["macro_f1"], 4)
    res["per_class_acc"] = [round(a, 4) for a in res.get("per_class_acc", [])]
    res["n_test"] = len(splits.test)
    res["error"] = round(100.0 - res["acc"], 4)
    return res


def cached_features(module: Any, loader, cfg: DictConfig, splits: DatasetSplits, backbone: Any):
    """Test features from the cache, or encoded and stored.

    The key holds the backbone and its weights (and the seed when the weights are random: each seed builds other
    weights), the transform, the precision, and every image's path, label, size and modification time, so
    regenerated or replaced images are encoded again. An unwritable cache only warns (``FeatureCache.store``).
    """
    from prograd_pl.models.backbone import resolve_pretrained

    weights = resolve_pretrained(backbone.pretrained)
    parts = {
        "backbone": backbone.name, "weights": weights_fingerprint(weights), "dataset": splits.name,
        "image_size": backbone.image_size, "mean": backbone.mean, "std": backbone.std,
        # version 3: bf16/fp16 image features come from a copy of the tower cast once, no longer from autocast
        "transform": "resize-bicubic+centercrop", "precision": str(cfg.trainer.precision), "version": 3,
        "image_pass": {k: bool(cfg.model.get(k, False)) for k in ("image_bf16", "image_compile")},
    }  # fmt: skip
    if weights is None:
        parts["seed"] = int(cfg.seed)
    items = []
    for d in splits.test:
        try:
            st = Path(d.path).stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        items.append((f"{d.path}|{stamp}", d.label))
    cache = FeatureCache(Path(cfg.cache_root) / "features")
    feats, labels, hit = cache.get_or_compute(parts, items, lambda: encode_images(module, loader))
    log.info("test features of %s: %s", splits.name, "from cache" if hit else "encoded and cached")
    return feats, labels


@torch.no_grad()
def encode_images(module: Any, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen, normalised image features of a whole loader."""
    feats, labels = [], []
    device = module.logit_scale.device
    module.eval()
    for images, y in loader:
        feats.append(module.image_features(images.to(device)).cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)
